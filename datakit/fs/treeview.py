"""Read-only views of Git trees: `ro/`, snapshots, `trees/D-…`, merge inputs.

A view has a *source* giving the root tree each time it is asked: for
`branch/<b>/ro` that is the branch's current head (a live view), for the
others a fixed tree.  Nodes remember their path and re-resolve it on every
operation, and are cached per (path, is-dir) so the same path keeps the same
qid.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from datakit import store as st
from datakit.formats import convert_kind
from datakit.fs.errors import store_errors
from datakit.vfs import Attr, Directory, File, Handle, Kind, Node
from datakit.vfs import errors as fserr

Source = Callable[[], "st.TreeView | None"]


class _View:
    """State shared by every node of one view."""

    def __init__(self, store: st.Store, source: Source) -> None:
        self.store = store
        self.source = source
        self.nodes: dict[tuple[tuple[str, ...], bool], Node] = {}

    def entry(self, path: tuple[str, ...]) -> st.Entry | None:
        tree = self.source()
        if tree is None:
            return st.Entry(st.Kind.DIR, st.EMPTY_TREE) if not path else None
        with store_errors():
            return tree.lookup(path)

    def node(self, path: tuple[str, ...], entry: st.Entry) -> Node:
        is_dir = entry.kind is st.Kind.DIR
        key = (path, is_dir)
        node = self.nodes.get(key)
        if node is None:
            cls = TreeDir if is_dir else TreeFile
            node = self.nodes[key] = cls(path[-1], self, path)
        return node


class TreeDir(Directory):
    def __init__(self, name: str, view: _View, path: tuple[str, ...]) -> None:
        super().__init__(name)
        self._view = view
        self._path = path

    async def lookup(self, name: str) -> Node:
        path = (*self._path, name)
        entry = self._view.entry(path)
        if entry is None:
            raise fserr.not_found()
        return self._view.node(path, entry)

    async def entries(self) -> list[Node]:
        tree = self._view.source()
        if tree is None:
            return []
        with store_errors():
            here = tree.lookup(self._path)
            if here is None:
                raise fserr.not_found()
            if here.kind is not st.Kind.DIR:
                raise fserr.not_a_directory()
            listing = tree.listdir(self._path)
        return [self._view.node((*self._path, name), entry) for name, entry in listing]

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise fserr.read_only_dir()

    async def mkdir(self, name: str) -> Node:
        raise fserr.read_only_dir()

    async def remove(self, child: Node) -> None:
        raise child.remove_error()

    async def rename(self, child: Node, new_dir: Directory, new_name: str) -> None:
        raise fserr.read_only_dir()


class TreeFile(File):
    def __init__(self, name: str, view: _View, path: tuple[str, ...]) -> None:
        super().__init__(name)
        self._view = view
        self._path = path

    def _entry(self) -> st.Entry:
        entry = self._view.entry(self._path)
        if entry is None:
            raise fserr.not_found()
        if entry.kind is st.Kind.DIR:
            raise fserr.is_a_directory()
        return entry

    def attr(self) -> Attr:
        return entry_attr(self._view.store, self._entry())

    async def open(self) -> Handle:
        return await open_entry(self._view.store, self._entry())

    async def truncate(self, length: int) -> None:
        # Upstream quirk kept: "truncating" to the current non-zero size is a no-op.
        if length == 0 or length != self.attr().length:
            raise fserr.read_only_file()


class BlobHandle(Handle):
    """An open blob. It holds no copy of its own: a small blob is read from
    the store's shared cache at each read, a big one from the temporary file
    all its readers share (so 20 opens of a file cost one copy, or none).

    A big blob is inflated by a worker thread as it is read: a read of a
    range not there yet waits for it without blocking the event loop, so
    until all of it is there the handle ``may_block`` (the server runs its
    reads in tasks); after that its reads are answered inline again."""

    def __init__(self, reader: st.BlobReader) -> None:
        self._reader = reader
        self.may_block = isinstance(reader, st.StreamedBlob) and not reader.complete

    async def read(self, offset: int, count: int) -> bytes:
        return bytes(await self.read_buffer(offset, count))

    async def read_buffer(self, offset: int, count: int) -> bytes | memoryview:
        size = self._reader.size
        if offset < 0:
            raise fserr.negative_offset(offset)
        if offset > size:
            raise fserr.beyond_eof(offset, size)
        if count <= 0:
            return b""
        reader = self._reader
        if self.may_block and isinstance(reader, st.StreamedBlob):
            await _inflated(reader, offset, count)
            if reader.complete:
                self.may_block = False
        with store_errors():
            if isinstance(reader, st.CachedBlob):
                return reader.view(offset, count)
            return reader.read(offset, count)


async def _inflated(reader: st.StreamedBlob, offset: int, count: int) -> None:
    """Wait until the worker inflating ``reader`` has the range (or failed:
    the read then raises), woken by it through the event loop's token."""
    ready = trio.Event()
    token = trio.lowlevel.current_trio_token()
    if not reader.notify(offset, count, lambda: token.run_sync_soon(ready.set)):
        await ready.wait()


class BlobFile(File):
    """A read-only file showing one blob (`trees/F-<sha>`)."""

    def __init__(self, name: str, store: st.Store, entry: st.Entry) -> None:
        super().__init__(name)
        self._store = store
        self._entry = entry

    def attr(self) -> Attr:
        return entry_attr(self._store, self._entry)

    async def open(self) -> Handle:
        return await open_entry(self._store, self._entry)


def entry_attr(store: st.Store, entry: st.Entry) -> Attr:
    """A file entry's attributes: its size, and a symlink's target."""
    kind = convert_kind(entry.kind, Kind)
    with store_errors():
        if kind is not Kind.LINK:
            return Attr(kind, store.content_size(entry))
        data = store.read_blob(entry.sha)
    return Attr(kind, len(data), data.decode("utf-8", "surrogateescape"))


# Copying big blobs (the first change to a committed file) takes at most
# this many worker threads, so editors never occupy the threads commits need.
COPIERS = trio.CapacityLimiter(2)


async def open_entry(store: st.Store, entry: st.Entry) -> Handle:
    # Cheap whatever the size: a big blob streams, inflated by its own
    # worker thread as it is read (see BlobHandle).
    with store_errors():
        reader = store.reader(entry)
    return BlobHandle(reader)


def tree_view(name: str, store: st.Store, source: Source) -> TreeDir:
    """The root directory of a read-only view named `name`."""
    return TreeDir(name, _View(store, source), ())


def fixed_tree(store: st.Store, tree_sha: str | None) -> Source:
    tree = store.tree(tree_sha) if tree_sha else None
    return lambda: tree
