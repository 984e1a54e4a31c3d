"""Protocol-neutral virtual files.

The server translates 9p requests into calls on these nodes; the DataKit tree
(`datakit.fs`) and the example tmpfs are built from them.  Every node gets a
unique qid path from a global counter when it is created, so a tree that keeps
its node objects (rather than rebuilding them on each lookup) gives stable
qids, which `cp` and the Linux dentry cache need.

Operations that may wait (live streams, commits that touch the disk) are
coroutines; attribute reads are plain methods because they must be cheap.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from datakit.vfs import errors
from datakit.vfs.errors import FsError

_qid_paths = itertools.count(1)


class Kind(enum.Enum):
    """What a node is. The store's and the client's kinds have the same
    member names: the fs layer converts between them by name
    (``datakit.formats.convert_kind``), so keep them alike."""

    DIR = "dir"
    FILE = "file"
    EXEC = "exec"
    LINK = "link"  # a symbolic link
    GITLINK = "gitlink"  # a submodule: a read-only file holding its commit id


@dataclass(frozen=True, slots=True)
class Attr:
    kind: Kind
    length: int = 0
    target: str = ""  # symlink target, empty otherwise


class Node:
    """Base of every file and directory.

    `qid_path` identifies the node for as long as it lives, and `is_dir`
    never changes, so a server may build its wire identity of the node once
    and keep it in `cached_qid` (vfs itself never reads it: it cannot know the
    protocol's type)."""

    is_dir = False
    cached_qid: object | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.qid_path = next(_qid_paths)

    def detach(self) -> None:
        """The connection this tree was built for is gone: let go of what it
        held. The server calls it once on each connection's root; a node
        whose tree keeps no per-connection state has nothing to do."""

    def attr(self) -> Attr:
        raise NotImplementedError

    async def truncate(self, length: int) -> None:
        raise errors.read_only_file()

    async def chmod(self, kind: Kind, target: str | None) -> None:
        """Change the kind of a file (executable bit, or turn into a symlink)."""
        raise errors.read_only_file()

    def remove_error(self) -> FsError:
        """What removing this node from a fixed directory reports."""
        return errors.read_only_file()


class Handle:
    """An open file: one per open fid."""

    # True if read or write can wait for something other than the CPU (a
    # change, the network): the server then runs them in a task of their
    # own.  Everything else, directory operations included, must not wait.
    may_block: bool = False

    async def read(self, offset: int, count: int) -> bytes:
        raise errors.not_permitted()

    async def read_buffer(self, offset: int, count: int) -> bytes | memoryview:
        """`read`, for a reply: a handle over immutable bytes may answer with
        a view of them, which the server sends without copying."""
        return await self.read(offset, count)

    async def write(self, offset: int, data: bytes) -> int:
        raise errors.read_only_file()

    def close(self) -> None:
        """Called when the fid is clunked; must not block."""


class File(Node):
    async def open(self) -> Handle:
        raise NotImplementedError


class Directory(Node):
    """A directory; by default fixed: nothing created, removed or renamed."""

    is_dir = True

    def attr(self) -> Attr:
        return Attr(Kind.DIR)

    async def lookup(self, name: str) -> Node:
        raise errors.not_found()

    async def entries(self) -> list[Node]:
        """The listing a fresh open sees (captured at open time by the server)."""
        return []

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise errors.read_only_dir()

    async def mkdir(self, name: str) -> Node:
        raise errors.read_only_dir()

    async def remove(self, child: Node) -> None:
        raise child.remove_error()

    async def rename(self, child: Node, new_dir: Directory, new_name: str) -> None:
        raise errors.read_only_dir()

    async def truncate(self, length: int) -> None:
        # Linux truncates with O_TRUNC before writes; on a directory only 0 is harmless.
        if length != 0:
            raise errors.invalid("Can't set length of a directory")

    async def chmod(self, kind: Kind, target: str | None) -> None:
        raise errors.not_permitted()

    def remove_error(self) -> FsError:
        return errors.read_only_dir()


N = TypeVar("N", bound=Node)


class MappingDir(Directory, Generic[N]):
    """A directory whose children are the values of a dict, keyed by name.

    Fixed trees use it as it is; directories that create, remove or rename
    children change `children` through `add`, `take` and `move`, so the rule
    "the node under that name must be the one asked for" is written once.
    Listed in insertion order, or by name when `sorted_listing` is set (a
    directory clients fill, where insertion order would be an accident).
    """

    sorted_listing = False

    def __init__(self, name: str, children: Iterable[N] = ()) -> None:
        super().__init__(name)
        self.children: dict[str, N] = {}
        for child in children:
            self.add(child)

    def add(self, child: N) -> N:
        """Put `child` under its name, replacing any node there."""
        self.children[child.name] = child
        return child

    def add_new(self, child: N) -> N:
        """`add`, but EEXIST if the name is taken."""
        if child.name in self.children:
            raise errors.already_exists()
        return self.add(child)

    def take(self, child: Node) -> N:
        """Remove `child`; ENOENT if it is no longer here (removed, renamed
        or replaced through another fid)."""
        node = self.children.get(child.name)
        if node is not child or node is None:
            raise errors.not_found()
        del self.children[child.name]
        return node

    def move(self, child: Node, new_dir: MappingDir[N], new_name: str) -> None:
        """Take `child` from here into `new_dir` as `new_name`, replacing any
        node there: the same node, so its qid stays."""
        node = self.take(child)
        node.name = new_name
        new_dir.add(node)

    async def lookup(self, name: str) -> Node:
        try:
            return self.children[name]
        except KeyError:
            raise errors.not_found() from None

    async def entries(self) -> list[Node]:
        if self.sorted_listing:
            return [self.children[k] for k in sorted(self.children)]
        return list(self.children.values())


def read_slice(data: bytes | bytearray, offset: int, count: int) -> bytes:
    """Read of a byte string with the spec's offset rules (A6)."""
    if offset < 0:
        raise errors.negative_offset(offset)
    if offset > len(data):
        raise errors.beyond_eof(offset, len(data))
    if count <= 0:
        return b""
    return bytes(data[offset : offset + count])


# In-memory files of the tree itself (a transaction's `msg` and `parents`, a
# remote's `url`, the example tree) hold what clients write, so their size is
# bounded: past it, EFBIG rather than whatever an offset asks to allocate.
MAX_BUFFER = 16 << 20


def write_into(buf: bytearray, offset: int, data: bytes, limit: int = MAX_BUFFER) -> None:
    """Overwrite at offset, zero-filling any gap (spec 2.3); EFBIG past `limit`."""
    end = offset + len(data)
    if end > limit:
        raise errors.too_large()
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))
    if offset == len(buf):
        buf.extend(data)
    else:
        buf[offset:end] = data


def truncate_buffer(buf: bytearray, length: int, limit: int = MAX_BUFFER) -> None:
    if length < 0:
        raise errors.negative_offset(length)
    if length > limit:
        raise errors.too_large()
    if length < len(buf):
        del buf[length:]
    else:
        buf.extend(bytes(length - len(buf)))


class _BytesHandle(Handle):
    def __init__(self, get: Callable[[], bytes | bytearray]) -> None:
        self._get = get

    async def read(self, offset: int, count: int) -> bytes:
        return read_slice(self._get(), offset, count)


class StaticFile(File):
    """Read-only file whose content is fixed, or computed when read."""

    def __init__(
        self, name: str, content: bytes | Callable[[], bytes], kind: Kind = Kind.FILE
    ) -> None:
        super().__init__(name)
        self._content = content
        self.kind = kind

    def content(self) -> bytes:
        c = self._content
        return c if isinstance(c, bytes) else c()

    def attr(self) -> Attr:
        data = self.content()
        if self.kind is Kind.LINK:
            return Attr(Kind.LINK, len(data), data.decode("utf-8", "surrogateescape"))
        return Attr(self.kind, len(data))

    async def open(self) -> Handle:
        data = self.content()
        return _BytesHandle(lambda: data)

    async def truncate(self, length: int) -> None:
        raise errors.read_only_file()


class BufferFile(File):
    """An in-memory read-write byte string (transaction `msg`, remote `url`)."""

    def __init__(self, name: str, initial: bytes = b"") -> None:
        super().__init__(name)
        self.data = bytearray(initial)

    def attr(self) -> Attr:
        return Attr(Kind.FILE, len(self.data))

    async def open(self) -> Handle:
        return _BufferHandle(self)

    async def truncate(self, length: int) -> None:
        truncate_buffer(self.data, length)

    async def chmod(self, kind: Kind, target: str | None) -> None:
        if kind is not Kind.FILE:
            raise errors.chmod_special()


class _BufferHandle(Handle):
    def __init__(self, file: BufferFile) -> None:
        self._file = file

    async def read(self, offset: int, count: int) -> bytes:
        return read_slice(self._file.data, offset, count)

    async def write(self, offset: int, data: bytes) -> int:
        if offset < 0:
            raise errors.invalid(f"Bad write offset {offset}")
        write_into(self._file.data, offset, data)
        return len(data)


class StreamCursor:
    """Sequential reads with the Linux flush rule (spec 2.6).

    Offsets must follow on from what was already returned, and after a read
    that returned data the next read returns nothing: within one read(2) the
    Linux client keeps asking until a reply is empty, so without that empty
    reply a live stream would never hand its data to the application.
    """

    def __init__(self) -> None:
        self.offset = 0
        self._flush_pending = False

    def check(self, offset: int) -> bool:
        """Validate the offset; True if this read must be the empty flush reply."""
        if offset != self.offset:
            raise errors.seek_in_stream()
        if self._flush_pending:
            self._flush_pending = False
            return True
        return False

    def advance(self, data: bytes) -> bytes:
        if data:
            self.offset += len(data)
            self._flush_pending = True
        return data


class CommandFile(File):
    """A file that runs a command on each write and keeps its output to read.

    `may_block`: the command waits on something other than the CPU (the
    network, a worker thread, the disk), so its writes must not hold up the
    connection."""

    def __init__(
        self,
        name: str,
        run: Callable[[bytes], Awaitable[bytes]],
        initial: bytes = b"",
        *,
        may_block: bool = False,
    ) -> None:
        super().__init__(name)
        self._run = run
        self.pending = bytearray(initial)
        self.may_block = may_block

    def attr(self) -> Attr:
        return Attr(Kind.FILE, len(self.pending))

    async def open(self) -> Handle:
        return _CommandHandle(self)

    async def truncate(self, length: int) -> None:
        if length != 0:
            raise errors.invalid("Can't extend command file")

    async def chmod(self, kind: Kind, target: str | None) -> None:
        if kind is not Kind.FILE:
            raise errors.chmod_special()

    def remove_error(self) -> FsError:
        return errors.not_permitted()

    async def execute(self, data: bytes) -> None:
        result = await self._run(data.strip())
        self.pending = bytearray(result)


class _CommandHandle(Handle):
    def __init__(self, file: CommandFile) -> None:
        self._file = file
        self.may_block = file.may_block
        self._cursor = StreamCursor()

    async def read(self, offset: int, count: int) -> bytes:
        if self._cursor.check(offset) or count <= 0:
            return b""
        pending = self._file.pending
        chunk = bytes(pending[:count])
        del pending[:count]
        return self._cursor.advance(chunk)

    async def write(self, offset: int, data: bytes) -> int:
        if offset != self._cursor.offset:
            raise errors.seek_in_stream()
        await self._file.execute(data)
        self._cursor.offset += len(data)
        return len(data)


class StatusFile(File):
    """Read-only value computed at open time, read like a stream (`head`)."""

    def __init__(self, name: str, compute: Callable[[], bytes]) -> None:
        super().__init__(name)
        self._compute = compute

    def attr(self) -> Attr:
        return Attr(Kind.FILE, len(self._compute()))

    async def open(self) -> Handle:
        return _StatusHandle(self._compute())


class _StatusHandle(Handle):
    def __init__(self, value: bytes) -> None:
        self._buf = value
        self._cursor = StreamCursor()

    async def read(self, offset: int, count: int) -> bytes:
        if self._cursor.check(offset) or count <= 0:
            return b""
        chunk, self._buf = self._buf[:count], self._buf[count:]
        return self._cursor.advance(chunk)
