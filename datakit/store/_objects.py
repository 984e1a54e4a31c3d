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
import weakref
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dulwich.errors import ObjectFormatException

from datakit.formats import render_gitlink

from ._blobstream import Producer, StreamedBlob, let_go
from ._content import BUDGET, CHUNK, Content, Limits, temporary_file
from ._durable import datasync, fsync_dir, new_temporary, write_all
from ._errors import CorruptTree, NoSpace, NotFound, StoreError
from ._names import problem
from ._packs import PackedObject, packed_object, write_pack

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
    # A submodule: its sha names a commit of another repository, so it is
    # never read here. Git (canon_mode) treats every mode it does not know
    # as one too; so do we, which keeps such entries instead of dropping them.
    GITLINK = 0o160000

    @property
    def is_dir(self) -> bool:
        return self is Kind.DIR


_NOT_BLOBS = (Kind.DIR, Kind.GITLINK)


_MODE_BYTES = {
    Kind.FILE: b"100644",
    Kind.EXEC: b"100755",
    Kind.LINK: b"120000",
    Kind.DIR: b"40000",
    Kind.GITLINK: b"160000",
}


def kind_of_mode(mode: bytes) -> Kind:
    """The kind of a tree entry's octal mode, by git's own rule (canon_mode)."""
    value = int(mode, 8)
    fmt = value & 0o170000
    if fmt == 0o040000:
        return Kind.DIR
    if fmt == 0o120000:
        return Kind.LINK
    if fmt == 0o100000:
        return Kind.EXEC if value & 0o100 else Kind.FILE
    return Kind.GITLINK


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Kind
    sha: str
    # The mode exactly as read from a tree when git wrote another spelling
    # than ours for this kind (100664, 0100644, 140000...): written back
    # unchanged, so an entry DataKit did not change keeps its bytes.
    mode: bytes = b""

    @property
    def mode_bytes(self) -> bytes:
        return self.mode or _MODE_BYTES[self.kind]


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
    entries: Iterable[tuple[bytes, Entry]], hidden: Iterable[HiddenEntry] = ()
) -> bytes:
    """Git tree body; directories sort as if their name ended with ``/``.
    ``hidden`` entries go in verbatim, except one whose name is now taken by
    a visible entry (git refuses duplicate names)."""
    items = [
        (name, e.kind is Kind.DIR, e.mode_bytes + b" " + name + b"\0" + bytes.fromhex(e.sha))
        for name, e in entries
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
        kind = kind_of_mode(mode)
        # (a gitlink, like a directory, is no blob: not a .gitmodules either)
        if problem(name, symlink=kind is Kind.LINK, directory=kind in _NOT_BLOBS) is not None:
            hidden.append(HiddenEntry(name, kind is Kind.DIR, raw[pos:end]))
        else:
            out[decode_name(name)] = Entry(
                kind, raw[nul + 1 : end].hex(), b"" if mode == _MODE_BYTES[kind] else mode
            )
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
        if weight > self.budget:
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


class CachedBlob:
    """A reader of a blob that fits the cache: every read goes through the
    shared cache, so an open file pins nothing of its own."""

    __slots__ = ("_db", "sha", "size")

    def __init__(self, db: ObjectDB, sha: str, size: int) -> None:
        self._db = db
        self.sha = sha
        self.size = size

    def read(self, offset: int, count: int) -> bytes:
        return self._db.blob(self.sha)[offset : offset + max(0, count)]

    def view(self, offset: int, count: int) -> memoryview:
        """`read` without the copy: blobs are immutable bytes."""
        return memoryview(self._db.blob(self.sha))[offset : offset + max(0, count)]


class BytesReader:
    """A reader over bytes already at hand (what a submodule entry reads as)."""

    __slots__ = ("data", "size")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, count: int) -> bytes:
        return self.data[offset : offset + max(0, count)]


BlobReader = CachedBlob | StreamedBlob | BytesReader


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
    # Blobs bigger than this (or than the cache) on disk are streamed (see
    # _blobstream): inflating one whole takes ~1.3 ms a MiB, on the event
    # loop, before its first byte; below it, it is whole in the shared cache.
    STREAM_MIN = 4 << 20
    # Streamed blobs kept inflated (in their temporary files, not in
    # memory) after their last reader, for the next one.
    KEEP_STREAMED = 4

    def __init__(
        self,
        backend: Any,
        objects_dir: str | None,
        *,
        compression: int = LOOSE_COMPRESSION,
        limits: Limits | None = None,
    ) -> None:
        self.backend = backend  # a dulwich object store
        self.objects_dir = objects_dir
        self.limits = limits or Limits()
        self.compression = compression  # zlib level of loose objects, as git's
        self.overlay: dict[str, tuple[int, bytes]] = {}
        self.overlay_bytes = 0
        self._overlay_lock = threading.Lock()
        self._backend_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.trees = _LRU(200_000)
        self.blobs = _LRU(self.limits.cache_size)
        # Streamed blobs: shared while anyone reads them, and the last few
        # kept (on disk, not in memory) for the next reader.
        self._big: weakref.WeakValueDictionary[str, StreamedBlob] = weakref.WeakValueDictionary()
        self._recent_big: deque[StreamedBlob] = deque(maxlen=self.KEEP_STREAMED)
        self._starting = threading.Lock()  # one StreamedBlob per blob
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
        size = None
        if self.objects_dir is not None:
            # The packs already open first (a packed tree: no open() of a
            # loose path that is not there), then loose, then new packs.
            packed = self._packed(sha, rescan=False)
            if packed is None:
                size = self._loose_blob_size(sha)
                if size is None:
                    packed = self._packed(sha)
            if packed is not None:
                if packed.type_num != BLOB:
                    raise NotFound()
                size = packed.size
        if size is None:  # a delta (or not there: blob() raises NotFound)
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

    def blob_reader(self, sha: str) -> BlobReader:
        """Range reads of a blob without a private copy: through the shared
        cache if it is small, else from one shared temporary file that a
        worker thread fills as the readers go (see _blobstream)."""
        return self._ready_reader(sha) or self._stream(sha)

    def _ready_reader(self, sha: str) -> BlobReader | None:
        item = self.overlay.get(sha)
        if item is not None:
            if item[0] != BLOB:
                raise NotFound()
            # In memory the overlay is the storage: read it in place. On
            # disk a big one may be flushed (and gone from memory) meanwhile.
            if self.objects_dir is None or len(item[1]) <= self.blobs.budget:
                return CachedBlob(self, sha, len(item[1]))
        data = self.blobs.get(sha)
        if data is not None:
            return CachedBlob(self, sha, len(data))
        big = self._big.get(sha)
        if big is not None and not big.failed:
            return big
        size = self.blob_size(sha)  # from the object's header where it can
        # (the cache takes a blob of its weight, size + 64: one it refuses
        # would be inflated again at every read)
        if size + 64 <= min(self.STREAM_MIN, self.blobs.budget) or (
            self.objects_dir is None and size <= self.blobs.budget
        ):
            return CachedBlob(self, sha, size)
        return None

    def _stream(self, sha: str) -> StreamedBlob:
        size = self.blob_size(sha)
        with self._starting:  # a second opener shares the first one's
            big = self._big.get(sha)
            if big is not None and not big.failed:
                return big
            # (a failed one, a disk full, say, is tried again by a new opener;
            # its current readers keep their error)
            # Its descriptor counts with the transactions' temporary files:
            # readers of many big blobs must not take every descriptor either.
            try:
                fd = temporary_file(self.limits)
            except NoSpace:
                # Those kept only for a next reader give their files back.
                kept = list(self._recent_big)
                self._recent_big.clear()
                let_go(kept)
                fd = temporary_file(self.limits)
            try:
                big = StreamedBlob(sha, fd, size, self._producer(sha))
            except BaseException:
                os.close(fd)
                BUDGET.give_file()
                raise
            self._big[sha] = big
            self._recent_big.append(big)
            return big

    def _producer(self, sha: str) -> Producer:
        """What inflates the blob's content, in the worker thread: a loose
        object, or a whole (undeltified) pack entry, as git packs big
        files, a chunk at a time; anything else (a delta) through dulwich."""

        def produce(emit: Callable[[bytes], None]) -> None:
            if self.objects_dir is not None:
                try:
                    self._inflate_loose(sha, emit)
                    return
                except FileNotFoundError:
                    pass  # packed (maybe just now, by `git gc`)
                packed = self._packed(sha)
                if packed is not None and packed.whole and packed.type_num == BLOB:
                    with open(packed.path, "rb") as f:
                        f.seek(packed.body)
                        _inflate_stream(f, emit)
                    return
            raw = self.get_raw(sha)
            if raw is None or raw[0] != BLOB:
                raise NotFound()
            data = raw[1]
            for start in range(0, len(data), CHUNK):
                emit(data[start : start + CHUNK])

        return produce

    def _packed(self, sha: str, *, rescan: bool = True) -> PackedObject | None:
        """Where and what object ``sha`` is in a pack, from entry headers
        only; None if it is in no pack (with ``rescan`` False: in none that
        dulwich has open yet), or its entry is malformed (reading it says so).

        The packs dulwich already has open are searched, and the headers
        read from its map of the pack: no directory listing nor open() per
        blob (``ls -l`` of a packed tree)."""
        key = bytes.fromhex(sha)
        with self._backend_lock:
            try:
                return packed_object(lambda k: _find_in_packs(self.backend, k, rescan=rescan), key)
            except (ValueError, IndexError, zlib.error):
                return None

    def _inflate_loose(self, sha: str, emit: Callable[[bytes], None]) -> None:
        """Inflate a loose blob's content to ``emit``; FileNotFoundError if
        it is not a loose object, NotFound if it is no blob."""
        assert self.objects_dir is not None
        header = b""  # until the NUL that ends "blob <size>"
        in_header = True

        def body(out: bytes) -> None:
            nonlocal header, in_header
            if in_header:
                header += out
                head, sep, out = header.partition(b"\0")
                if not sep:
                    if len(header) > 64:
                        raise NotFound()
                    return
                if not head.startswith(b"blob "):
                    raise NotFound()
                in_header = False
            if out:
                emit(out)

        with open(os.path.join(self.objects_dir, sha[:2], sha[2:]), "rb") as f:
            _inflate_stream(f, body)
        if in_header:
            raise NotFound()

    # What a file entry reads as: its blob, except a submodule entry
    # (gitlink), whose commit is in another repository: it reads as its id
    # and a newline.
    def file_content(self, kind: Kind, sha: str) -> bytes:
        return render_gitlink(sha) if kind is Kind.GITLINK else self.blob(sha)

    def file_size(self, kind: Kind, sha: str) -> int:
        return len(render_gitlink(sha)) if kind is Kind.GITLINK else self.blob_size(sha)

    def file_reader(self, kind: Kind, sha: str) -> BlobReader:
        if kind is Kind.GITLINK:
            return BytesReader(render_gitlink(sha))
        return self.blob_reader(sha)

    def blob_chunks(self, sha: str) -> Iterator[bytes]:
        reader = self.blob_reader(sha)
        for offset in range(0, reader.size, CHUNK):
            yield reader.read(offset, CHUNK)

    def put_content(self, content: Content) -> str:
        """Store a transaction's file content as a blob. A spilled one on
        disk is hashed and deflated a chunk at a time into a durable loose
        object; in memory a blob is held in memory by definition (bounded by
        the maximum file size).

        Safe in a worker thread while the content is still being written
        to: the object is named by the hash of exactly the bytes deflated
        into it, so it is always a valid object (the caller checks whether
        the content changed meanwhile before using its id)."""
        if not content.spilled or self.objects_dir is None:
            return self.put_blob(content.getvalue())
        size = len(content)
        header = b"blob %d\0" % size
        digest = hashlib.sha1(header)
        deflate = zlib.compressobj(self.compression)
        fd, tmp = new_temporary(self.objects_dir, "obj")
        try:
            try:
                write_all(fd, deflate.compress(header))
                done = 0
                while done < size:
                    chunk = content.read(done, min(CHUNK, size - done))
                    if not chunk:
                        raise StoreError("file truncated while being stored")
                    digest.update(chunk)
                    write_all(fd, deflate.compress(chunk))
                    done += len(chunk)
                write_all(fd, deflate.flush())
                datasync(fd)
            finally:
                os.close(fd)
            sha = digest.hexdigest()
            with self._backend_lock:
                present = sha in self.overlay or sha.encode("ascii") in self.backend
            if present:
                os.unlink(tmp)
            else:
                self._place_loose(tmp, sha)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.sizes.put(sha, size)
        self.types.put(sha, BLOB)
        return sha

    def _place_loose(self, tmp: str, sha: str) -> None:
        """Rename a finished temporary object into its fan-out directory."""
        assert self.objects_dir is not None
        subdir = os.path.join(self.objects_dir, sha[:2])
        for attempt in range(3):
            try:
                os.replace(tmp, os.path.join(subdir, sha[2:]))
                break
            except FileNotFoundError:
                if attempt == 2 or not os.path.exists(tmp):
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(subdir)  # new, or just removed by `git gc`
        _fsync_fanout_dir(subdir)
        fsync_dir(self.objects_dir)

    def _loose_temporary(self, subdir: str) -> tuple[int, str]:
        assert self.objects_dir is not None
        for attempt in range(3):
            try:
                return new_temporary(subdir, "obj")
            except FileNotFoundError:
                # A new fan-out directory, or `git gc` just removed an
                # emptied one (as git does, make it and try again).
                if attempt == 2:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(subdir)
        raise AssertionError("unreachable")

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
        items = [(encode_name(n), e) for n, e in entries.items()]
        raw = serialize_tree(items, hidden)
        sha = self.put(TREE, raw)
        if hidden:
            taken = {name for name, _ in items}
            hidden = tuple(h for h in hidden if h.name not in taken)
        self.trees.put(sha, TreeEntries(dict(entries), hidden))
        return sha

    def put_blob(self, data: bytes) -> str:
        sha = self.put(BLOB, data)
        self.blobs.put(sha, data, len(data) + 64)
        return sha

    def flush(self, roots: Iterable[str], also: Sequence[int] = ()) -> None:
        """Make the overlay objects reachable from ``roots`` durable on disk,
        and the data of the files open at ``also`` (a ref's lock file).

        A few objects become loose objects: each is written to a temporary
        file, all of them and ``also`` are fdatasynced concurrently (one
        round of waiting for the disk, not one per file), then the objects
        are renamed into place, and the touched directories are fsynced
        (a second round). From :data:`PACK_MIN_OBJECTS` on, they go into one
        pack instead: two fsyncs rather than one per object.
        """
        if self.objects_dir is None or not self.overlay:
            _parallel(datasync, list(also))
            return
        with self._flush_lock:
            self._flush(roots, also)

    def _flush(self, roots: Iterable[str], also: Sequence[int] = ()) -> None:
        todo = [r for r in roots if r in self.overlay]
        if not todo:
            _parallel(datasync, list(also))
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
                # (a gitlink's commit is in another repository: never ours)
                todo.extend(e.sha for e in entries.values() if e.kind is not Kind.GITLINK)
                todo.extend(h.raw[-20:].hex() for h in entries.hidden)
            batch.append((sha, type_num, raw))
        if len(batch) >= PACK_MIN_OBJECTS:
            assert self.objects_dir is not None
            write_pack(self.objects_dir, batch, self.compression)
            _parallel(datasync, list(also))
        else:
            self._write_loose_batch(batch, also)
        for sha, type_num, raw in batch:
            self.types.put(sha, type_num)
            with self._overlay_lock:
                if self.overlay.pop(sha, None) is not None:
                    self.overlay_bytes -= len(raw)

    def _write_loose_batch(
        self, batch: list[tuple[str, int, bytes]], also: Sequence[int] = ()
    ) -> None:
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
                if not os.path.isdir(subdir):
                    dirs.add(self.objects_dir)
                fd, tmp = self._loose_temporary(subdir)
                pending.append((fd, tmp, path))
                write_all(fd, data)
                dirs.add(subdir)
            _parallel(datasync, [*(fd for fd, _, _ in pending), *also])
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


def _inflate_stream(f: Any, emit: Callable[[bytes], None]) -> None:
    """Inflate the zlib stream at ``f``'s position, at most CHUNK bytes of
    output at a time (a pack entry's stream ends before the file does)."""
    inflate = zlib.decompressobj()
    while not inflate.eof and (data := f.read(CHUNK)):
        while data:
            emit(inflate.decompress(data, CHUNK))
            data = inflate.unconsumed_tail
    emit(inflate.flush())


def _find_in_packs(backend: Any, key: bytes, *, rescan: bool = True) -> tuple[Any, int] | None:
    """(pack, offset) of object ``key`` in the repository's packs: the ones
    dulwich has open, then (a miss, if ``rescan``) after rescanning the pack
    directory for packs added since, as dulwich's own lookups do."""
    cached = getattr(backend, "_iter_cached_packs", None)
    if cached is not None:
        for pack in cached():
            try:
                return pack, pack.index.object_offset(key)
            except KeyError:
                continue
        if not rescan:
            return None
    lookup = getattr(backend, "_lookup_in_packs", None)
    if lookup is not None:
        try:
            found: tuple[Any, int] = lookup(lambda p: (p, p.index.object_offset(key)))
            return found
        except KeyError:
            return None
    for pack in backend.packs:
        try:
            return pack, pack.index.object_offset(key)
        except KeyError:
            continue
    return None


def _fsync_fanout_dir(path: str) -> None:
    # Gone: `git gc` packed this directory's objects and removed it meanwhile;
    # they are in its (fsynced) pack now, nothing of ours left to make durable.
    with contextlib.suppress(FileNotFoundError):
        fsync_dir(path)


_executor: Any = None


def _parallel(fn: Any, items: list[Any]) -> None:
    """Run blocking syscalls (fsync) concurrently: their waits for the disk
    overlap (and share a journal commit where there is a journal)."""
    global _executor
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    import concurrent.futures  # here: not worth its import time at start-up

    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="datakit-fsync"
        )
    # The calling thread takes the first item itself: one hand-off less,
    # and it waits for the disk rather than for a wake-up.
    futures = [_executor.submit(fn, item) for item in items[1:]]
    try:
        fn(items[0])
    finally:
        # Every call has finished before anything goes on (the caller
        # closes the descriptors next); then the first failure is raised.
        concurrent.futures.wait(futures)
    for future in futures:
        future.result()
