"""The editable `rw/` tree of a transaction, over the store's EditableTree.

Nodes hold a path and re-resolve it against the transaction's tree on every
operation (the tree changes under them), and are cached per (path, is-dir) so
a path keeps its qid while it exists.
"""

from __future__ import annotations

import errno as E

import trio

from datakit import store as st
from datakit.formats import convert_kind
from datakit.fs.errors import store_errors
from datakit.fs.treeview import COPIERS
from datakit.vfs import Attr, Directory, File, FsError, Handle, Kind, Node
from datakit.vfs import errors as fserr

Path = tuple[str, ...]


def _target_bytes(target: str | None) -> bytes | None:
    # Targets arrive as the exact bytes the client sent (surrogateescape).
    return None if target is None else target.encode("utf-8", "surrogateescape")


class RwTree:
    """The per-transaction node cache around one EditableTree."""

    def __init__(self, tree: st.EditableTree) -> None:
        self._tree: st.EditableTree | None = tree
        self.nodes: dict[tuple[Path, bool], Node] = {}

    @property
    def tree(self) -> st.EditableTree:
        if self._tree is None:  # the transaction is gone; a stale fid sees nothing
            raise fserr.not_found()
        return self._tree

    def release(self) -> None:
        """The transaction was committed or closed: let its content go now.

        Nodes, fids and the transaction's files refer to each other in cycles
        that only the cyclic garbage collector would free, at some later
        time; the tree itself (every edited file, in memory or in temporary
        files) hangs from here alone, so dropping it frees it at once."""
        self._tree = None
        self.nodes.clear()

    def node(self, path: Path, is_dir: bool) -> Node:
        key = (path, is_dir)
        node = self.nodes.get(key)
        if node is None:
            name = path[-1] if path else "rw"
            node = self.nodes[key] = RwDir(name, self, path) if is_dir else RwFile(name, self, path)
        return node

    def moved(self, node: RwDir | RwFile, new_path: Path) -> None:
        self.nodes.pop((node.path, node.is_dir), None)
        node.path = new_path
        node.name = new_path[-1]
        self.nodes[(new_path, node.is_dir)] = node


class RwDir(Directory):
    def __init__(self, name: str, rw: RwTree, path: Path) -> None:
        super().__init__(name)
        self.rw = rw
        self.path = path

    def attr(self) -> Attr:
        with store_errors():
            kind = self.rw.tree.kind(self.path)
        if kind is None:
            raise fserr.not_found()
        if kind is not st.Kind.DIR:
            raise fserr.not_a_directory()
        return Attr(Kind.DIR)

    async def lookup(self, name: str) -> Node:
        path = (*self.path, name)
        with store_errors():
            kind = self.rw.tree.kind(path)
        if kind is None:
            raise fserr.not_found()
        return self.rw.node(path, kind is st.Kind.DIR)

    async def entries(self) -> list[Node]:
        with store_errors():
            listing = self.rw.tree.listdir(self.path)
        return [self.rw.node((*self.path, name), kind is st.Kind.DIR) for name, kind in listing]

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        path = (*self.path, name)
        if kind is Kind.LINK and target is None:
            raise FsError("Missing target for symlink!", E.EINVAL)
        with store_errors():
            self.rw.tree.create_file(path, convert_kind(kind, st.Kind), _target_bytes(target))
        return self.rw.node(path, False)

    async def mkdir(self, name: str) -> Node:
        path = (*self.path, name)
        with store_errors():
            self.rw.tree.mkdir(path)
        return self.rw.node(path, True)

    async def remove(self, child: Node) -> None:
        assert isinstance(child, RwDir | RwFile)
        with store_errors():
            self.rw.tree.remove(child.path)

    async def rename(self, child: Node, new_dir: Directory, new_name: str) -> None:
        assert isinstance(child, RwDir | RwFile)
        if new_dir is not self:
            # 9p renames are within one directory; Linux falls back to copy on EXDEV.
            raise FsError("Invalid cross-device link", E.EXDEV)
        with store_errors():
            self.rw.tree.rename(self.path, child.path[-1], new_name)
        self.rw.moved(child, (*self.path, new_name))


class RwFile(File):
    def __init__(self, name: str, rw: RwTree, path: Path) -> None:
        super().__init__(name)
        self.rw = rw
        self.path = path

    def attr(self) -> Attr:
        with store_errors():
            found = self.rw.tree.stat(self.path)
        if found is None:
            raise fserr.not_found()
        kind, size = found
        if kind is st.Kind.DIR:
            raise fserr.is_a_directory()
        target = ""
        if kind is st.Kind.LINK:
            with store_errors():
                target = self.rw.tree.read_all(self.path).decode("utf-8", "surrogateescape")
        return Attr(convert_kind(kind, Kind), size, target)

    async def open(self) -> Handle:
        self.attr()  # the path must exist (and not be a directory) at open
        return _RwHandle(self)

    async def truncate(self, length: int) -> None:
        if length:  # emptying a file (O_TRUNC) needs no copy of what it held
            await self.copy_big_blob()
        with store_errors():
            self.rw.tree.truncate(self.path, length)

    async def copy_big_blob(self) -> None:
        """Before the first change to a big committed file, copy its blob in
        a worker thread: seconds for a GiB, which on the event loop would
        hold up every connection."""
        tree = self.rw.tree
        with store_errors():
            sha = tree.big_blob_to_copy(self.path)
            if sha is not None:
                copy = await trio.to_thread.run_sync(tree.copy_blob, sha, limiter=COPIERS)
                tree.adopt_copy(self.path, sha, copy)

    async def chmod(self, kind: Kind, target: str | None) -> None:
        with store_errors():
            if self.rw.tree.kind(self.path) is None:
                raise fserr.not_found()
            self.rw.tree.set_kind(self.path, convert_kind(kind, st.Kind), _target_bytes(target))


class _RwHandle(Handle):
    def __init__(self, file: RwFile) -> None:
        self._file = file

    async def read(self, offset: int, count: int) -> bytes:
        with store_errors():
            return self._file.rw.tree.read(self._file.path, offset, count)

    async def write(self, offset: int, data: bytes) -> int:
        await self._file.copy_big_blob()
        with store_errors():
            self._file.rw.tree.write(self._file.path, offset, data)
        return len(data)
