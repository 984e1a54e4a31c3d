"""`branch/` and `branch/<name>/`: heads, live streams, fast-forward, ro, transactions, watch."""

from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING

from datakit import metrics
from datakit import store as st
from datakit.formats import render_head, render_node_line
from datakit.fs.diffs import DiffDir
from datakit.fs.errors import store_errors
from datakit.fs.transactions import TransactionsDir
from datakit.fs.treeview import tree_view
from datakit.vfs import (
    Attr,
    Cell,
    CommandFile,
    Directory,
    File,
    FsError,
    Handle,
    Kind,
    MappingDir,
    Node,
    StatusFile,
    StreamCursor,
    StreamFile,
)
from datakit.vfs import errors as fserr

if TYPE_CHECKING:
    from datakit.fs.context import FsContext


def _count_reader(delta: int) -> None:
    metrics.LIVE_READERS.inc(delta)


class BranchesDir(MappingDir["BranchDir"]):
    """Branches in the store, plus (`children`) those this connection looked
    up or created, with their transactions."""

    def __init__(self, ctx: FsContext) -> None:
        super().__init__("branch")
        self.ctx = ctx
        self.store: st.Store = ctx.store

    def _dir(self, name: str) -> BranchDir:
        node = self.children.get(name)
        if node is None:
            node = self.add(BranchDir(name, self.ctx))
        return node

    async def lookup(self, name: str) -> Node:
        if name in self.children:
            return self.children[name]
        if "/" not in name and self.store.is_valid_branch_name(name) and self.store.head(name):
            return self._dir(name)
        raise fserr.not_found()

    async def entries(self) -> list[Node]:
        names = set(self.children)
        # Branches with '/' cannot be addressed as one path component: hide them.
        names.update(b for b in self.store.branches() if "/" not in b)
        return [self._dir(n) for n in sorted(names)]

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise fserr.only_directories()

    async def mkdir(self, name: str) -> Node:
        if "/" in name:
            raise FsError(f"{name} is not a valid branch name.", E.EINVAL)
        with store_errors():
            self.store.check_branch_name(name)
        return self._dir(name)

    async def remove(self, child: Node) -> None:
        assert isinstance(child, BranchDir)
        with store_errors():
            await self.ctx.write(self.store.delete_branch, child.branch_name)
        child.transactions.discard_all()
        if self.children.get(child.branch_name) is child:
            del self.children[child.branch_name]

    async def rename(self, child: Node, new_dir: Directory, new_name: str) -> None:
        assert isinstance(child, BranchDir)
        if new_dir is not self:
            raise FsError("Invalid cross-device link", E.EXDEV)
        if "/" in new_name:
            raise FsError(f"{new_name} is not a valid branch name.", E.EINVAL)
        with store_errors():
            self.store.check_branch_name(new_name)
        old = child.branch_name
        if self.children.get(old) is not child:
            raise fserr.not_found()
        if self.store.head(new_name) is not None:
            raise fserr.is_a_directory()
        with store_errors():
            await self.ctx.write(self.store.rename_branch, old, new_name)
        self.take(child)  # ENOENT if removed or renamed meanwhile
        stale = self.children.pop(new_name, None)
        if stale is not None:
            stale.transactions.discard_all()
        child.transactions.discard_all()
        child.rebind(new_name)
        self.add(child)


class BranchDir(MappingDir[Node]):
    def __init__(self, name: str, ctx: FsContext) -> None:
        super().__init__(name)
        self.ctx = ctx
        self.store: st.Store = ctx.store
        self.rebind(name)

    def rebind(self, name: str) -> None:
        """(Re)build every child for branch `name` (a renamed branch keeps its qid)."""
        self.name = self.branch_name = name
        cell = self.ctx.head_cell(name)
        store = self.store

        def head_tree() -> st.TreeView | None:
            head = cell.value
            return store.tree(store.commit_info(head).tree) if head else None

        self.transactions = TransactionsDir(self)
        self.children = {
            "ro": tree_view("ro", store, head_tree),
            "transactions": self.transactions,
            "watch": WatchDir("watch", self, ()),
            "head.live": StreamFile("head.live", cell, render_head, on_reader=_count_reader),
            # A durable ref update: a worker thread, maybe waiting on a lock.
            "fast-forward": CommandFile("fast-forward", self._fast_forward, may_block=True),
            "reflog": ReflogFile("reflog", self),
            "head": StatusFile("head", lambda: render_head(store.head(name))),
            "diff": DiffDir(store, lambda: t.sha if (t := head_tree()) else None),
        }
        self.head_tree = head_tree

    async def _fast_forward(self, text: bytes) -> bytes:
        with store_errors():
            commit = self.store.parse_commit_id(text.decode("utf-8", "replace"))
            await self.ctx.write(self.store.fast_forward, self.branch_name, commit)
        return b""


class ReflogFile(File):
    """Every branch update seen while reading, starting from a blank line (spec 3.3).

    Unlike `head.live` this counts updates rather than comparing renderings, so
    a branch that moves away and back is still reported.
    """

    def __init__(self, name: str, branch: BranchDir) -> None:
        super().__init__(name)
        self._cell = branch.ctx.head_cell(branch.branch_name)

    def attr(self) -> Attr:
        return Attr(Kind.FILE, 0)

    async def open(self) -> Handle:
        return _ReflogHandle(self._cell)


class _ReflogHandle(Handle):
    may_block = True

    def __init__(self, cell: Cell[str | None]) -> None:
        self._cell = cell
        self._seen = cell.version
        self._buf = b"\n"
        self._cursor = StreamCursor()

    async def read(self, offset: int, count: int) -> bytes:
        if self._cursor.check(offset) or count <= 0:
            return b""
        if not self._buf:
            metrics.LIVE_READERS.inc()
            try:
                while self._cell.version == self._seen:
                    await self._cell.wait_changed()
            finally:
                metrics.LIVE_READERS.dec()
            self._seen = self._cell.version
            self._buf = render_head(self._cell.value)
        chunk, self._buf = self._buf[:count], self._buf[count:]
        return self._cursor.advance(chunk)


class WatchDir(Directory):
    """`watch/` and `<name>.node/` directories: each has `tree.live` for its path."""

    def __init__(self, name: str, branch: BranchDir, path: tuple[str, ...]) -> None:
        super().__init__(name)
        self._branch = branch
        self._path = path
        self._children: dict[str, Node] = {}
        store = branch.store

        def render(head: str | None) -> bytes:
            if head is None:
                return render_node_line(None if path else (st.Kind.DIR, st.EMPTY_TREE))
            with store_errors():  # a corrupt tree on the way: EIO for this watch
                entry = store.tree(store.commit_info(head).tree).lookup(path)
            return render_node_line(None if entry is None else (entry.kind, entry.sha))

        cell = branch.ctx.head_cell(branch.branch_name)
        self._live = StreamFile("tree.live", cell, render, on_reader=_count_reader)

    async def lookup(self, name: str) -> Node:
        if name == "tree.live":
            return self._live
        if name.endswith(".node") and len(name) > len(".node"):
            node = self._children.get(name)
            if node is None:
                node = self._children[name] = WatchDir(
                    name, self._branch, (*self._path, name[: -len(".node")])
                )
            return node
        raise fserr.not_found()

    async def entries(self) -> list[Node]:
        nodes: list[Node] = [self._live]
        tree = self._branch.head_tree()
        if tree is not None:
            with store_errors():
                entry = tree.lookup(self._path)
                names = (
                    []
                    if entry is None or entry.kind is not st.Kind.DIR
                    else [name for name, _ in tree.listdir(self._path)]
                )
            for name in names:
                nodes.append(await self.lookup(f"{name}.node"))
        return nodes
