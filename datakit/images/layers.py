"""Image layers from DataKit trees (spec images.md, C.2).

A commit is an exact tree, so a layer is either the whole tree (a *full*
layer) or the difference between two trees (a *delta* layer) written as a
tar archive: additions and changes in full, removals as whiteouts. Both are
byte-reproducible — fixed attributes, a fixed order, gzip without a time or
a name at a fixed level — so the same trees always give the same digests
and registries deduplicate the blobs.

The delta comes from ``new.diff(old)`` (the store prunes equal subtrees),
plus cached ``stat`` look-ups of the changed paths' prefixes: its cost is
proportional to the change, never to the tree. Layers are streamed into a
temporary file while the two digests are computed, and a file's content
passes through a piece at a time (``read_chunks``): no file is ever held
whole in memory, whatever its size.
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import hashlib
import io
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from datakit.client import Commit, Diff, Dir, Kind, Link, Removed, Stat, Tree, Updated, Value

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"

# Level 6 (zlib's default) rather than 9: on a tree of small files 9 costs
# more time for about the same size; measured against 1 in the report. It is
# part of the digest: changing it changes every layer's digest.
GZIP_LEVEL = 6

WHITEOUT_PREFIX = ".wh."
OPAQUE_NAME = ".wh..wh..opq"

# A file's content is read and written in pieces of this size.
_CHUNK = 1 << 20

# The 9p backend memoises what a tree object has read; a fresh tree object
# is taken after this much so a walk of a big tree does not keep it all.
_READER_BYTES = 8 * 1024 * 1024
_READER_ITEMS = 4096

Steps = tuple[str, ...]


class LayerError(Exception):
    """A tree or an option that cannot become a layer; the message names the
    path or the option and what is wrong with it."""


@dataclass(frozen=True)
class Layer:
    path: Path  # temp file (in workdir) holding the blob exactly as stored
    digest: str  # "sha256:<hex>" of the stored (compressed) bytes
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int  # stored size in bytes
    media_type: str  # LAYER_GZIP or LAYER_TAR
    entries: int  # tar entries written (whiteouts included)


def _warn_stderr(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def normalize_prefix(prefix: str) -> str:
    """The prefix as a tar path without leading or trailing slashes:
    ``"/"`` -> ``""``, ``"/srv/data/"`` -> ``"srv/data"``."""
    inner = prefix.strip("/")
    if inner == "":
        return ""
    for part in inner.split("/"):
        if part in ("", ".", ".."):
            raise LayerError(f"prefix {prefix!r}: empty, '.' or '..' component")
        if "\0" in part:
            raise LayerError(f"prefix {prefix!r}: NUL character")
        if part.startswith(WHITEOUT_PREFIX):
            raise LayerError(
                f"prefix {prefix!r}: a name starting with {WHITEOUT_PREFIX} cannot be "
                "carried in an image layer"
            )
    return inner


def _path(steps: Steps) -> str:
    return "/".join(steps)


def _check_name(steps: Steps) -> None:
    if steps and steps[-1].startswith(WHITEOUT_PREFIX):
        raise LayerError(
            f"{_path(steps)}: a name starting with {WHITEOUT_PREFIX} cannot be "
            "carried in an image layer"
        )


def _name_key(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------
# Writing: tar -> (gzip) -> temp file, with both digests computed on the way


class _HashingSink(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__()
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0
        self.abandoned = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        if self.abandoned:  # a failed layer: late flushes go nowhere
            return len(view)
        self.sha.update(view)
        self.out.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size


# The tar format, written here rather than with ``tarfile``: the bytes of a
# layer are its digest, so they must not change with the Python version
# (and ``tarfile`` costs ~60 us an entry, a third of a big full layer).
# What is written is what ``tarfile`` writes in PAX_FORMAT (a test checks
# they agree byte for byte): a ustar header per entry, preceded by a PAX
# extended header ("././@PaxHeader", type x) when the name or the link
# target is not ASCII or longer than 100 bytes, or the size does not fit.
BLOCK = 512
RECORD = 20 * BLOCK  # the archive is padded to a multiple of this
_REGTYPE, _SYMTYPE, _DIRTYPE, _PAXTYPE = b"0", b"2", b"5", b"x"
_MAGIC = b"ustar\x0000"


def _field(data: bytes, length: int) -> bytes:
    return data[:length].ljust(length, b"\0")


def _octal(value: int, length: int) -> bytes:
    return b"%0*o\0" % (length - 1, value)


def _ustar(name: str, type_: bytes, mode: int, size: int, mtime: int, linkname: str) -> bytes:
    """One 512-byte ustar header (uid = gid = 0, no user or group names)."""
    header = b"".join(
        (
            _field(name.encode("ascii", "replace"), 100),
            _octal(mode, 8),
            _octal(0, 8),  # uid
            _octal(0, 8),  # gid
            _octal(size, 12),
            _octal(mtime, 12),
            b"        ",  # checksum, counted as spaces
            type_,
            _field(linkname.encode("ascii", "replace"), 100),
            _MAGIC,
            bytes(32),  # uname
            bytes(32),  # gname
            bytes(8),  # devmajor
            bytes(8),  # devminor
            bytes(155),  # prefix
        )
    ).ljust(BLOCK, b"\0")
    checksum = sum(header)
    return header[:148] + b"%06o\0" % checksum + header[155:]


def _pax_records(records: dict[str, str]) -> bytes:
    """``"<len> key=value\n"`` records; raw bytes (hdrcharset=BINARY) when a
    value is not valid UTF-8 (a Git name that is not UTF-8)."""
    try:
        values = [v.encode("utf-8") for v in records.values()]
        out = b""
    except UnicodeEncodeError:
        values = [v.encode("utf-8", "surrogateescape") for v in records.values()]
        out = b"21 hdrcharset=BINARY\n"
    for key, value in zip(records, values, strict=True):
        body = len(key) + len(value) + 3  # " ", "=", "\n"
        length = body
        while length != body + len(str(length)):  # it counts its own digits
            length = body + len(str(length))
        out += b"%d %s=%s\n" % (length, key.encode("ascii"), value)
    return out


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def _header(name: str, type_: bytes, mode: int, size: int, mtime: int, linkname: str = "") -> bytes:
    pax: dict[str, str] = {}
    if not name.isascii() or len(name) > 100:
        pax["path"] = name
    if not linkname.isascii() or len(linkname) > 100:
        pax["linkpath"] = linkname
    if size >= 8**11:
        pax["size"], size = str(size), 0
    if mtime >= 8**11:
        pax["mtime"], mtime = str(mtime), 0
    header = _ustar(name, type_, mode, size, mtime, linkname)
    if not pax:
        return header
    records = _pax_records(pax)
    return (
        _ustar("././@PaxHeader", _PAXTYPE, 0, len(records), 0, "")
        + records
        + _padding(len(records))
        + header
    )


class _LayerWriter:
    """One layer being written: tar entries with the fixed attributes of C.2,
    gathered in a buffer and handed on in large writes."""

    FLUSH = 1 << 20

    def __init__(self, file: BinaryIO, compression: str, mtime: int) -> None:
        self.stored = _HashingSink(file)
        self.gzip: gzip.GzipFile | None = None
        if compression == "gzip":
            self.gzip = gzip.GzipFile(
                filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=self.stored, mtime=0
            )
            self.raw = _HashingSink(self.gzip)  # type: ignore[arg-type]
        else:
            self.raw = self.stored
        self.buf = bytearray()
        self.offset = 0  # uncompressed bytes so far
        self.mtime = mtime
        self.entries = 0

    def _put(self, data: bytes) -> None:
        self.offset += len(data)
        if len(data) >= self.FLUSH:
            self._flush()
            self.raw.write(data)
            return
        self.buf += data
        if len(self.buf) >= self.FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.raw.write(self.buf)
            self.buf = bytearray()

    def directory(self, name: str) -> None:
        self._put(_header(name + "/", _DIRTYPE, 0o755, 0, self.mtime))
        self.entries += 1

    def file(self, name: str, size: int, chunks: Iterable[bytes], executable: bool) -> None:
        """A file of ``size`` bytes (the header comes first) whose content
        is streamed from ``chunks``; LayerError if they hold another size,
        as a file changed while being read would: the tar would be corrupt."""
        self._put(_header(name, _REGTYPE, 0o755 if executable else 0o644, size, self.mtime))
        done = 0
        for chunk in chunks:
            done += len(chunk)
            if done > size:
                break
            self._put(chunk)
        if done != size:
            got = f"more than {size}" if done > size else str(done)
            raise LayerError(f"{name}: {size} bytes expected, {got} read: changed while read?")
        self._put(_padding(size))
        self.entries += 1

    def symlink(self, name: str, target: str) -> None:
        self._put(_header(name, _SYMTYPE, 0o777, 0, self.mtime, target))
        self.entries += 1

    def whiteout(self, name: str) -> None:
        self._put(_header(name, _REGTYPE, 0o644, 0, self.mtime))
        self.entries += 1

    def abandon(self) -> None:
        """Drop a failed layer: nothing more reaches the file, not even
        what gzip flushes when it is garbage-collected."""
        self.raw.abandoned = self.stored.abandoned = True
        if self.gzip is not None:
            with contextlib.suppress(Exception):
                self.gzip.close()

    def close(self) -> tuple[str, str, int]:
        """Finish the archive (two zero blocks, then zeros up to a whole
        record, as tar does); (digest, diff_id, stored size)."""
        self._put(bytes(2 * BLOCK))
        self._put(bytes(-self.offset % RECORD))
        self._flush()
        if self.gzip is not None:
            self.gzip.close()
        return (
            "sha256:" + self.stored.sha.hexdigest(),
            "sha256:" + self.raw.sha.hexdigest(),
            self.stored.size,
        )


def _write_layer(
    workdir: Path, compression: str, mtime: int, body: Callable[[_LayerWriter], None]
) -> Layer:
    """Run ``body`` on a writer streaming into a new temp file in ``workdir``;
    the file is removed if anything fails."""
    if compression not in ("gzip", "none"):
        raise LayerError(f"compression {compression!r}: use gzip or none")
    if mtime < 0:
        raise LayerError(f"mtime {mtime}: must not be negative")
    fd, name = tempfile.mkstemp(prefix="layer-", suffix=".tmp", dir=workdir)
    try:
        with os.fdopen(fd, "wb") as file:
            writer = _LayerWriter(file, compression, mtime)
            try:
                body(writer)
            except BaseException:
                writer.abandon()
                raise
            digest, diff_id, size = writer.close()
    except BaseException:
        os.unlink(name)
        raise
    return Layer(
        path=Path(name),
        digest=digest,
        diff_id=diff_id,
        size=size,
        media_type=LAYER_GZIP if compression == "gzip" else LAYER_TAR,
        entries=writer.entries,
    )


# ---------------------------------------------------------------------------
# Reading trees


class _Reader:
    """Reads a commit's tree through a tree object renewed every few MiB:
    the 9p backend memoises stats and listings per tree object, which a walk
    of a big tree must not accumulate. A file costs a ``stat`` (its size goes
    in the tar header first) and a ``read_chunks``: on 9p two round trips,
    where a whole-file ``read`` takes five."""

    def __init__(self, commit: Commit) -> None:
        self.commit = commit
        self.tree: Tree = commit.tree()
        self.bytes = 0
        self.items = 0

    def node(self, steps: Steps) -> tuple[Stat, Value | None]:
        """The stat and, for a directory or a symlink, the value; a file's
        content is left to :meth:`chunks` (its size is the stat's)."""
        if self.bytes > _READER_BYTES or self.items > _READER_ITEMS:
            self.tree, self.bytes, self.items = self.commit.tree(), 0, 0
        tree = self.tree
        stat = tree.stat(steps)
        if stat is None:  # cannot happen on an immutable tree
            raise LayerError(f"{_path(steps)}: vanished while being read")
        self.items += 1
        if stat.kind not in (Kind.DIR, Kind.LINK):
            return stat, None  # a file (streamed) or a submodule (skipped)
        value = tree.read(steps)
        if isinstance(value, Dir):
            self.bytes += sum(len(n) + 16 for n in value.names)
        return stat, value

    def chunks(self, steps: Steps) -> Iterator[bytes]:
        return self.tree.read_chunks(steps, _CHUNK)


class _Stats:
    """Cached ``stat`` of one tree: the prefixes of changed paths repeat."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.cache: dict[Steps, Stat | None] = {}

    def __call__(self, steps: Steps) -> Stat | None:
        try:
            return self.cache[steps]
        except KeyError:
            stat = self.cache[steps] = self.tree.stat(steps)
            return stat


def _tar_name(prefix: str, steps: Steps) -> str:
    path = _path(steps)
    return f"{prefix}/{path}" if prefix else path


def _emit_node(
    writer: _LayerWriter,
    reader: _Reader,
    prefix: str,
    steps: Steps,
    stat: Stat,
    value: Value | None,
    warn: Callable[[str], None],
) -> bool:
    """Write one non-whiteout entry; False for a skipped submodule."""
    if stat.kind is Kind.GITLINK:
        warn(f"{_path(steps)}: submodule skipped")
        return False
    _check_name(steps)
    name = _tar_name(prefix, steps)
    if stat.kind is Kind.DIR:
        writer.directory(name)
    elif stat.kind is Kind.LINK:
        assert isinstance(value, Link)
        writer.symlink(name, value.target)
    else:
        writer.file(name, stat.size, reader.chunks(steps), stat.kind is Kind.EXEC)
    return True


def _walk(
    writer: _LayerWriter,
    reader: _Reader,
    prefix: str,
    top: Steps,
    names: tuple[str, ...],
    warn: Callable[[str], None],
) -> None:
    """Write everything below directory ``top`` (whose names are given),
    depth-first, names in byte order, each directory before its contents."""
    stack: list[Iterator[str]] = [iter(sorted(names, key=_name_key))]
    dirs: list[Steps] = [top]
    while stack:
        name = next(stack[-1], None)
        if name is None:
            stack.pop()
            dirs.pop()
            continue
        steps = (*dirs[-1], name)
        stat, value = reader.node(steps)
        if _emit_node(writer, reader, prefix, steps, stat, value, warn) and isinstance(value, Dir):
            stack.append(iter(sorted(value.names, key=_name_key)))
            dirs.append(steps)


def _prefix_dirs(writer: _LayerWriter, prefix: str) -> None:
    parts = prefix.split("/") if prefix else []
    for i in range(1, len(parts) + 1):
        writer.directory("/".join(parts[:i]))


# ---------------------------------------------------------------------------
# Public API


def full_layer(
    commit: Commit,
    *,
    prefix: str = "/",
    workdir: Path,
    compression: str = "gzip",
    mtime: int = 0,
    warn: Callable[[str], None] = _warn_stderr,
) -> Layer:
    """The whole tree of ``commit`` as one layer below ``prefix`` (whose
    components get directory entries of their own)."""
    inner = normalize_prefix(prefix)

    def body(writer: _LayerWriter) -> None:
        _prefix_dirs(writer, inner)
        reader = _Reader(commit)
        _, root = reader.node(())
        assert isinstance(root, Dir)
        _walk(writer, reader, inner, (), root.names, warn)

    return _write_layer(workdir, compression, mtime, body)


class _Op(enum.Enum):
    ENTRY = "entry"  # a file, executable or symlink of the new tree, in full
    DIR = "dir"  # a directory entry only (a parent of another entry)
    WHITEOUT = "whiteout"  # .wh.<name> in the parent
    OPAQUE = "opaque"  # the directory, its opaque whiteout and all its new contents


@dataclass
class _Plan:
    """What a delta layer holds, by tree path: small (proportional to the change)."""

    ops: dict[Steps, _Op]

    def entry(self, steps: Steps) -> None:
        self.ops[steps] = _Op.ENTRY
        self.parents(steps)

    def whiteout(self, steps: Steps) -> None:
        if steps[-1].startswith(WHITEOUT_PREFIX):
            return  # never in a lower layer (refused there): nothing to hide
        self.ops[steps] = _Op.WHITEOUT
        self.parents(steps)

    def parents(self, steps: Steps) -> None:
        for i in range(len(steps) - 1, 0, -1):
            if steps[:i] in self.ops:
                break  # already there, and so are its parents
            self.ops[steps[:i]] = _Op.DIR

    def ordered(self) -> list[tuple[Steps, _Op]]:
        """C.2's order: depth-first; in a directory whiteouts first, then
        entries, each in byte order; a directory before its contents."""

        def key(item: tuple[Steps, _Op]) -> tuple[tuple[int, bytes], ...]:
            steps, op = item
            parts = [(1, _name_key(s)) for s in steps]
            if op is _Op.WHITEOUT:
                parts[-1] = (0, _name_key(WHITEOUT_PREFIX + steps[-1]))
            return tuple(parts)

        return sorted(self.ops.items(), key=key)


def _plan_delta(
    old: Commit, new: Commit, opaque_threshold: int | None, warn: Callable[[str], None]
) -> tuple[_Plan, Tree]:
    changes = new.diff(old)
    new_tree = new.tree()
    new_stat = _Stats(new_tree)
    plan = _Plan({})
    for change in changes:
        steps = tuple(change.path.split("/"))
        if isinstance(change, Removed):
            # The topmost prefix that is gone (or is now a submodule) gets the
            # one whiteout; a prefix that is now a file or link replaces the
            # old directory by itself (B.1), and a path that is now a
            # directory is covered by its added contents.
            for i in range(1, len(steps) + 1):
                stat = new_stat(steps[:i])
                if stat is None or stat.kind is Kind.GITLINK:
                    plan.whiteout(steps[:i])
                    break
                if stat.kind is not Kind.DIR:
                    break
            continue
        stat = new_stat(steps)
        if stat is None:
            raise LayerError(f"{change.path}: in the diff but not in commit {new.id}")
        if stat.kind is Kind.GITLINK:
            warn(f"{change.path}: submodule skipped")
            if isinstance(change, Updated):
                plan.whiteout(steps)  # the file it replaces must go
            continue
        plan.entry(steps)
    if opaque_threshold is not None:
        _apply_opaque(plan, old.tree(), new_tree, _prefixes(changes), opaque_threshold)
    return plan, new_tree


def _prefixes(changes: list[Diff]) -> set[Steps]:
    """Every changed path and all its prefixes."""
    out: set[Steps] = set()
    for change in changes:
        steps = tuple(change.path.split("/"))
        for i in range(len(steps), 0, -1):
            if steps[:i] in out:
                break
            out.add(steps[:i])
    return out


def _apply_opaque(
    plan: _Plan, old_tree: Tree, new_tree: Tree, touched: set[Steps], threshold: int
) -> None:
    """Replace the whiteouts of a directory by an opaque whiteout when no old
    entry of it survives unchanged and at least ``threshold`` are removed.
    Never the tree's root: there an opaque whiteout would also hide the
    base image's files."""
    counts = Counter(s[:-1] for s, op in plan.ops.items() if op is _Op.WHITEOUT)
    opaque: list[Steps] = []
    for d in sorted((d for d, n in counts.items() if n >= threshold and d), key=len):
        if any(d[: len(o)] == o for o in opaque):
            continue
        old_names = old_tree.read_dir(d)
        new_names = set(new_tree.read_dir(d))
        removed = sum(1 for n in old_names if n not in new_names)
        survives = any(n in new_names and (*d, n) not in touched for n in old_names)
        if removed >= threshold and not survives:
            opaque.append(d)
    for d in opaque:
        for steps in [s for s in plan.ops if len(s) > len(d) and s[: len(d)] == d]:
            del plan.ops[steps]
        plan.ops[d] = _Op.OPAQUE


def delta_layer(
    old: Commit,
    new: Commit,
    *,
    prefix: str = "/",
    workdir: Path,
    compression: str = "gzip",
    mtime: int = 0,
    opaque_threshold: int | None = None,
    warn: Callable[[str], None] = _warn_stderr,
) -> Layer:
    """The layer that turns an image of ``old`` into one of ``new``."""
    inner = normalize_prefix(prefix)
    if opaque_threshold is not None and opaque_threshold < 1:
        raise LayerError(f"opaque threshold {opaque_threshold}: must be at least 1")
    plan, _ = _plan_delta(old, new, opaque_threshold, warn)
    items = plan.ordered()

    def body(writer: _LayerWriter) -> None:
        if items:
            _prefix_dirs(writer, inner)
        reader = _Reader(new)
        for steps, op in items:
            if op is _Op.WHITEOUT:
                writer.whiteout(_tar_name(inner, (*steps[:-1], WHITEOUT_PREFIX + steps[-1])))
                continue
            if op is _Op.DIR:  # known to be one: no need to list it
                _check_name(steps)
                writer.directory(_tar_name(inner, steps))
                continue
            stat, value = reader.node(steps)
            _emit_node(writer, reader, inner, steps, stat, value, warn)
            if op is _Op.OPAQUE:
                assert isinstance(value, Dir)
                writer.whiteout(_tar_name(inner, (*steps, OPAQUE_NAME)))
                _walk(writer, reader, inner, steps, value.names, warn)

    return _write_layer(workdir, compression, mtime, body)
