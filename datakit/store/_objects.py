"""Git objects: the value types, git-exact serialisation, and the object
database (an overlay of freshly written objects over a dulwich object store,
plus caches so repeated lookups never re-read or re-inflate an object).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dulwich.errors import ObjectFormatException

from ._durable import datasync, fsync_dir, new_temporary, write_all
from ._errors import CorruptTree, NotFound
from ._names import problem
from ._packs import write_pack

AUTHOR = b"datakit <datakit@mobyproject.org>"
# git's default core.looseCompression: best speed; loose objects are short-lived
# until a repack, and commit latency matters more than their size.
LOOSE_COMPRESSION = 1
# A flush of this many objects or more writes one pack instead of loose
# objects. Below it, loose objects fsynced in parallel cost about as much and
# keep the pack count (which every lookup miss walks) low.
PACK_MIN_OBJECTS = 64
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

Path = tuple[str, ...]

# Git numeric object types (as in pack files and dulwich's get_raw).
COMMIT, TREE, BLOB, TAG = 1, 2, 3, 4
TYPE_NAMES = {COMMIT: "commit", TREE: "tree", BLOB: "blob", TAG: "tag"}
_TYPE_HEADERS = {COMMIT: b"commit", TREE: b"tree", BLOB: b"blob", TAG: b"tag"}
_TYPE_NUMBERS = {header: num for num, header in _TYPE_HEADERS.items()}


class Kind(enum.Enum):
    FILE = 0o100644
    EXEC = 0o100755
    LINK = 0o120000
    DIR = 0o040000

    @property
    def is_dir(self) -> bool:
        return self is Kind.DIR


_MODE_BYTES = {
    Kind.FILE: b"100644",
    Kind.EXEC: b"100755",
    Kind.LINK: b"120000",
    Kind.DIR: b"40000",
}


def _kind_of_mode(mode: int) -> Kind | None:
    if mode == 0o040000:
        return Kind.DIR
    if mode == 0o120000:
        return Kind.LINK
    if mode & 0o170000 == 0o100000:
        return Kind.EXEC if mode & 0o111 else Kind.FILE
    return None  # gitlinks (submodules) and garbage are not part of the data model


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Kind
    sha: str


@dataclass(frozen=True, slots=True)
class CommitInfo:
    id: str
    tree: str
    parents: tuple[str, ...]
    message: bytes
    author: bytes
    committer: bytes
    time: int


def encode_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def decode_name(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def hash_object(type_num: int, raw: bytes) -> str:
    h = hashlib.sha1(_TYPE_HEADERS[type_num])
    h.update(b" %d\0" % len(raw))
    h.update(raw)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class HiddenEntry:
    """A tree entry DataKit cannot show: a name git refuses (``.git``, ``..``,
    a ``/`` ...) or a mode outside the data model. Written by some other tool;
    kept byte for byte (``raw``) when the tree is rewritten."""

    name: bytes
    is_dir: bool
    raw: bytes  # "<mode> <name>\0<20-byte id>"


class TreeEntries(dict[str, Entry]):
    """The entries of a tree that DataKit shows, by name; ``hidden`` holds
    the others."""

    __slots__ = ("hidden",)

    def __init__(
        self, entries: dict[str, Entry] | None = None, hidden: tuple[HiddenEntry, ...] = ()
    ) -> None:
        super().__init__(entries or {})
        self.hidden = hidden


class MalformedTree(ValueError):
    """A tree body git's own parser would reject too."""


def _tree_sort_key(item: tuple[bytes, bool, bytes]) -> bytes:
    name, is_dir, _ = item
    return name + b"/" if is_dir else name


def serialize_tree(
    entries: Iterable[tuple[bytes, Kind, str]], hidden: Iterable[HiddenEntry] = ()
) -> bytes:
    """Git tree body; directories sort as if their name ended with ``/``.
    ``hidden`` entries go in verbatim, except one whose name is now taken by
    a visible entry (git refuses duplicate names)."""
    items = [
        (name, kind is Kind.DIR, _MODE_BYTES[kind] + b" " + name + b"\0" + bytes.fromhex(sha))
        for name, kind, sha in entries
    ]
    taken = {name for name, _, _ in items}
    items.extend((h.name, h.is_dir, h.raw) for h in hidden if h.name not in taken)
    return b"".join(raw for _, _, raw in sorted(items, key=_tree_sort_key))


def serialize_commit(
    tree: str, parents: Iterable[str], message: bytes, author: bytes, when: int
) -> bytes:
    lines = [b"tree " + tree.encode()]
    lines.extend(b"parent " + p.encode() for p in parents)
    ident = author + b" %d +0000" % when
    lines.append(b"author " + ident)
    lines.append(b"committer " + ident)
    return b"\n".join(lines) + b"\n\n" + message


def parse_tree_body(raw: bytes) -> TreeEntries:
    """Parse a tree body as git does; MalformedTree where git would fail
    (a name with NUL, written by a buggy tool, shifts everything after it).
    Entries that cannot be shown go to ``hidden`` (see :class:`HiddenEntry`)."""
    out: dict[str, Entry] = {}
    hidden: list[HiddenEntry] = []
    pos, n = 0, len(raw)
    while pos < n:
        sp = raw.find(b" ", pos)
        mode = raw[pos:sp] if sp >= 0 else b""
        if not mode or mode.strip(b"01234567"):
            raise MalformedTree(f"bad mode {raw[pos : pos + 8]!r} at byte {pos}")
        nul = raw.find(b"\0", sp)
        if nul < 0 or nul + 21 > n:
            raise MalformedTree(f"truncated entry at byte {pos}")
        name, end = raw[sp + 1 : nul], nul + 21
        kind = _kind_of_mode(int(mode, 8))
        if kind is None or problem(name, symlink=kind is Kind.LINK) is not None:
            hidden.append(HiddenEntry(name, int(mode, 8) & 0o170000 == 0o040000, raw[pos:end]))
        else:
            out[decode_name(name)] = Entry(kind, raw[nul + 1 : end].hex())
        pos = end
    return TreeEntries(out, tuple(hidden))


def _parse_ident_time(value: bytes) -> int:
    # "<name> <<email>> <time> <tz>"
    try:
        return int(value.rsplit(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def parse_commit_body(sha: str, raw: bytes) -> CommitInfo:
    header, _, message = raw.partition(b"\n\n")
    tree = ""
    parents: list[str] = []
    author = committer = b""
    for line in header.split(b"\n"):
        if line.startswith(b" "):
            continue  # continuation of a multi-line header (gpgsig, mergetag)
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value.decode()
        elif key == b"parent":
            parents.append(value.decode())
        elif key == b"author":
            author = value
        elif key == b"committer":
            committer = value
    ident_end = author.rfind(b">")
    author_ident = author[: ident_end + 1] if ident_end >= 0 else author
    c_end = committer.rfind(b">")
    committer_ident = committer[: c_end + 1] if c_end >= 0 else committer
    return CommitInfo(
        id=sha,
        tree=tree,
        parents=tuple(parents),
        message=message,
        author=author_ident,
        committer=committer_ident,
        time=_parse_ident_time(committer or author),
    )


class _LRU:
    """A dict bounded by a total weight (bytes for blobs, 1 per entry otherwise).

    Locked because a durable commit runs in a worker thread while the event
    loop keeps reading (an uncontended lock costs far less than a lookup)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.weight = 0
        self.data: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            item = self.data.get(key)
            if item is None:
                return None
            self.data.move_to_end(key)
            return item[0]

    def put(self, key: str, value: Any, weight: int = 1) -> None:
        if weight > self.budget // 4:
            return
        with self._lock:
            old = self.data.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            self.data[key] = (value, weight)
            self.weight += weight
            while self.weight > self.budget:
                _, (_, w) = self.data.popitem(last=False)
                self.weight -= w




class ObjectDB:
    """Objects of one repository.

    New objects first go to an in-memory overlay. For an on-disk repository
    :meth:`flush` writes the overlay objects reachable from given roots as
    fsynced loose objects just before a ref starts pointing at them; transient
    objects (merge bases, snapshots nobody references) never touch the disk.
    For an in-memory repository the overlay simply is the storage.

    Thread safety: one thread may write (put, flush) while others read. The
    overlay only loses an object after it is on disk, reads of the dulwich
    store are serialised (its pack files have one file position each), and
    flushes are serialised.
    """

    OVERLAY_LIMIT = 256 << 20  # bytes kept unflushed before spilling to disk

    def __init__(
        self, backend: Any, objects_dir: str | None, *, compression: int = LOOSE_COMPRESSION
    ) -> None:
        self.backend = backend  # a dulwich object store
        self.objects_dir = objects_dir
        self.compression = compression  # zlib level of loose objects, as git's
        self.overlay: dict[str, tuple[int, bytes]] = {}
        self.overlay_bytes = 0
        self._overlay_lock = threading.Lock()
        self._backend_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.trees = _LRU(200_000)
        self.blobs = _LRU(64 << 20)
        self.commits = _LRU(100_000)
        self.types = _LRU(200_000)
        self.sizes = _LRU(200_000)  # blob sizes, so `ls -l` need not inflate blobs

    # -- reading ---------------------------------------------------------
    def get_raw(self, sha: str) -> tuple[int, bytes] | None:
        item = self.overlay.get(sha)
        if item is not None:
            return item
        key = sha.encode("ascii")
        # Twice on disk: `git gc` may move a loose object into a new pack
        # between dulwich's pack lookup and its loose lookup; the second
        # pass rescans the pack directory.
        for _ in range(2 if self.objects_dir is not None else 1):
            try:
                with self._backend_lock:
                    return self.backend.get_raw(key)
            except KeyError:
                continue
            except ObjectFormatException:
                # dulwich parses a loose object and refuses a malformed one:
                # read its bytes here, so the reader can say what is wrong.
                return self._read_loose(sha)
            except (ValueError, AssertionError):
                return None
        return None

    def _read_loose(self, sha: str) -> tuple[int, bytes] | None:
        if self.objects_dir is None:
            return None
        try:
            with open(os.path.join(self.objects_dir, sha[:2], sha[2:]), "rb") as f:
                data = zlib.decompress(f.read())
        except (OSError, zlib.error):
            return None
        header, _, body = data.partition(b"\0")
        type_num = _TYPE_NUMBERS.get(header.partition(b" ")[0])
        return (type_num, body) if type_num is not None else None

    def object_type(self, sha: str) -> int | None:
        item = self.overlay.get(sha)
        if item is not None:
            return item[0]
        t = self.types.get(sha)
        if t is not None:
            return t
        if self.trees.get(sha) is not None:
            return TREE
        if self.commits.get(sha) is not None:
            return COMMIT
        raw = self.get_raw(sha)
        if raw is None:
            return None
        self.types.put(sha, raw[0])
        self._cache_parsed(sha, raw[0], raw[1])
        return raw[0]

    def _cache_parsed(self, sha: str, type_num: int, raw: bytes) -> None:
        if type_num == BLOB:
            self.blobs.put(sha, raw, len(raw) + 64)
        elif type_num == TREE:
            # A malformed tree is reported by tree_entries, to whoever reads it.
            with contextlib.suppress(MalformedTree):
                self.trees.put(sha, parse_tree_body(raw))
        elif type_num == COMMIT:
            self.commits.put(sha, parse_commit_body(sha, raw))

    def tree_entries(self, sha: str) -> TreeEntries:
        """The entries of tree ``sha``; CorruptTree if it cannot be parsed."""
        entries = self.trees.get(sha)
        if entries is not None:
            return entries  # type: ignore[no-any-return]
        raw = self.get_raw(sha)
        if raw is None or raw[0] != TREE:
            if sha == EMPTY_TREE:
                return TreeEntries()
            raise NotFound()
        try:
            entries = parse_tree_body(raw[1])
        except MalformedTree as exc:
            raise CorruptTree(sha, str(exc)) from None
        self.trees.put(sha, entries)
        return entries

    def blob(self, sha: str) -> bytes:
        data = self.blobs.get(sha)
        if data is not None:
            return data
        raw = self.get_raw(sha)
        if raw is None or raw[0] != BLOB:
            raise NotFound()
        self.blobs.put(sha, raw[1], len(raw[1]) + 64)
        return raw[1]

    def blob_size(self, sha: str) -> int:
        """The length of a blob, without inflating it when it is a loose object."""
        item = self.overlay.get(sha)
        if item is not None:
            if item[0] != BLOB:
                raise NotFound()
            return len(item[1])
        size = self.sizes.get(sha)
        if size is not None:
            return size
        data = self.blobs.get(sha)
        if data is not None:
            return len(data)
        size = self._loose_blob_size(sha) if self.objects_dir is not None else None
        if size is None:  # packed (or not there: blob() raises NotFound)
            size = len(self.blob(sha))
        self.sizes.put(sha, size)
        return size

    def _loose_blob_size(self, sha: str) -> int | None:
        """Read the size from a loose object's header: its first bytes inflated."""
        assert self.objects_dir is not None
        try:
            with open(os.path.join(self.objects_dir, sha[:2], sha[2:]), "rb") as f:
                head = f.read(256)
            header = zlib.decompressobj().decompress(head, 64)
        except (OSError, zlib.error):
            return None
        kind, sep, size = header.partition(b"\0")[0].partition(b" ")
        if kind != b"blob" or not sep or not size.isdigit():
            return None
        return int(size)

    def commit(self, sha: str) -> CommitInfo:
        info = self.commits.get(sha)
        if info is not None:
            return info
        raw = self.get_raw(sha)
        if raw is None or raw[0] != COMMIT:
            raise NotFound()
        info = parse_commit_body(sha, raw[1])
        self.commits.put(sha, info)
        return info

    # -- writing ---------------------------------------------------------
    def put(self, type_num: int, raw: bytes) -> str:
        sha = hash_object(type_num, raw)
        if sha in self.overlay:
            return sha
        with self._overlay_lock:
            if sha not in self.overlay:
                self.overlay[sha] = (type_num, raw)
                self.overlay_bytes += len(raw)
            spill = self.objects_dir is not None and self.overlay_bytes > self.OVERLAY_LIMIT
        if spill:
            self.flush(list(self.overlay))
        return sha

    def put_tree(self, entries: dict[str, Entry], hidden: tuple[HiddenEntry, ...] = ()) -> str:
        """Store a tree of ``entries`` plus ``hidden`` ones kept from the tree it replaces."""
        items = [(encode_name(n), e.kind, e.sha) for n, e in entries.items()]
        raw = serialize_tree(items, hidden)
        sha = self.put(TREE, raw)
        if hidden:
            taken = {name for name, _, _ in items}
            hidden = tuple(h for h in hidden if h.name not in taken)
        self.trees.put(sha, TreeEntries(dict(entries), hidden))
        return sha

    def put_blob(self, data: bytes) -> str:
        sha = self.put(BLOB, data)
        self.blobs.put(sha, data, len(data) + 64)
        return sha

    def flush(self, roots: Iterable[str]) -> None:
        """Make the overlay objects reachable from ``roots`` durable on disk.

        A few objects become loose objects: each is written to a temporary
        file, all of them are fsynced concurrently (the filesystem journals
        them in one group commit), then renamed into place, and the touched
        directories are fsynced. From :data:`PACK_MIN_OBJECTS` on, they go
        into one pack instead: two fsyncs rather than one per object.
        """
        if self.objects_dir is None or not self.overlay:
            return
        with self._flush_lock:
            self._flush(roots)

    def _flush(self, roots: Iterable[str]) -> None:
        todo = [r for r in roots if r in self.overlay]
        if not todo:
            return
        batch: list[tuple[str, int, bytes]] = []
        seen: set[str] = set()
        while todo:
            sha = todo.pop()
            if sha in seen:
                continue
            seen.add(sha)
            item = self.overlay.get(sha)
            if item is None:
                continue
            type_num, raw = item
            if type_num == COMMIT:
                info = self.commit(sha)
                todo.append(info.tree)
                todo.extend(info.parents)
            elif type_num == TREE:
                entries = self.tree_entries(sha)
                todo.extend(e.sha for e in entries.values())
                todo.extend(h.raw[-20:].hex() for h in entries.hidden)
            batch.append((sha, type_num, raw))
        if len(batch) >= PACK_MIN_OBJECTS:
            assert self.objects_dir is not None
            write_pack(self.objects_dir, batch, self.compression)
        else:
            self._write_loose_batch(batch)
        for sha, type_num, raw in batch:
            self.types.put(sha, type_num)
            with self._overlay_lock:
                if self.overlay.pop(sha, None) is not None:
                    self.overlay_bytes -= len(raw)

    def _write_loose_batch(self, batch: list[tuple[str, int, bytes]]) -> None:
        assert self.objects_dir is not None
        dirs: set[str] = set()
        pending: list[tuple[int, str, str]] = []  # fd, tmp path, final path
        try:
            for sha, type_num, raw in batch:
                subdir = os.path.join(self.objects_dir, sha[:2])
                path = os.path.join(subdir, sha[2:])
                if os.path.exists(path):
                    continue
                header = _TYPE_HEADERS[type_num] + b" %d\0" % len(raw)
                data = zlib.compress(header + raw, self.compression)
                for attempt in range(3):
                    try:
                        fd, tmp = new_temporary(subdir, "obj")
                        break
                    except FileNotFoundError:
                        # A new fan-out directory, or `git gc` just removed an
                        # emptied one (as git does, make it and try again).
                        if attempt == 2:
                            raise
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(subdir)
                        dirs.add(self.objects_dir)
                pending.append((fd, tmp, path))
                write_all(fd, data)
                dirs.add(subdir)
            _parallel(datasync, [fd for fd, _, _ in pending])
        except BaseException:
            # Disk full, I/O error: leave no temporary files behind. Nothing
            # was renamed into place, and the objects stay in the overlay.
            for _, tmp, _ in pending:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        finally:
            for fd, _, _ in pending:
                os.close(fd)
        renamed = 0
        try:
            for _, tmp, path in pending:
                os.replace(tmp, path)
                renamed += 1
        except BaseException:
            for _, tmp, _ in pending[renamed:]:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        _parallel(_fsync_fanout_dir, sorted(dirs))


def _fsync_fanout_dir(path: str) -> None:
    # Gone: `git gc` packed this directory's objects and removed it meanwhile;
    # they are in its (fsynced) pack now, nothing of ours left to make durable.
    with contextlib.suppress(FileNotFoundError):
        fsync_dir(path)


_executor: Any = None


def _parallel(fn: Any, items: list[Any]) -> None:
    """Run blocking syscalls (fsync) concurrently so they share journal commits."""
    global _executor
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    if _executor is None:
        from concurrent.futures import ThreadPoolExecutor

        _executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="datakit-fsync")
    for _ in _executor.map(fn, items):
        pass
