"""`branch/<b>/transactions/<t>/`: rw, msg, parents, ctl, merge, diff and the merge views."""

from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING

from datakit import formats, metrics
from datakit import store as st
from datakit.fs.diffs import DiffDir
from datakit.fs.errors import store_errors
from datakit.fs.rw import RwTree
from datakit.fs.treeview import fixed_tree, tree_view
from datakit.vfs import (
    BufferFile,
    CommandFile,
    FsError,
    Kind,
    MappingDir,
    Node,
    StaticFile,
)
from datakit.vfs import errors as fserr

if TYPE_CHECKING:
    from datakit.fs.branches import BranchDir


def conflict_order(path: tuple[str, ...]) -> tuple[str, ...]:
    # Upstream compares paths from the last component to the first.
    return tuple(reversed(path))


def parse_parents(store: st.Store, text: bytes) -> list[str]:
    with store_errors():
        return [store.parse_commit_id(line) for line in formats.parse_parents(text)]


class TransactionsDir(MappingDir["TransactionDir"]):
    """This connection's open transactions on one branch."""

    sorted_listing = True

    def __init__(self, branch: BranchDir) -> None:
        super().__init__("transactions")
        self.branch = branch
        self.ctx = branch.ctx

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise fserr.only_directories()

    async def mkdir(self, name: str) -> Node:
        if name in self.children:
            raise fserr.already_exists()
        tx = self.add(TransactionDir(name, self))
        self.ctx.opened(tx)
        return tx

    def discard(self, tx: TransactionDir) -> None:
        tx.release()
        if self.children.get(tx.name) is tx:
            del self.children[tx.name]
        self.ctx.closed(tx)

    def discard_all(self) -> None:
        for tx in list(self.children.values()):
            self.discard(tx)


class TransactionDir(MappingDir[Node]):
    """A 9p face of one store :class:`~datakit.store.Transaction`: its tree
    as ``rw/``, its message and parents as editable files (parsed when a
    merge or commit needs them), its merges' inputs as read-only views
    (``base``, ``ours``, ``theirs``, ``conflicts``, added by a merge)."""

    sorted_listing = True

    def __init__(self, name: str, parent: TransactionsDir) -> None:
        super().__init__(name)
        self.parent = parent
        self.branch = parent.branch
        self.ctx = parent.ctx
        # What the transaction reaches of the database: the store and the
        # runner of its writes.
        self.store: st.Store = self.ctx.store
        self.writer = self.ctx.write
        self._txn: st.Transaction | None = st.Transaction(self.store, self.branch.branch_name)
        self.rw = RwTree(self._txn.tree)
        self.rw_root = self.rw.node((), True)
        self.msg = BufferFile("msg")
        self.parents = BufferFile("parents", formats.render_parents(self.txn.parents))
        # A commit or merge waits on worker threads (hashing a big file, a
        # durable ref update) for up to seconds: never on the read loop.
        self.ctl = CommandFile("ctl", self._ctl, may_block=True)
        self.merge_file = CommandFile("merge", self._merge, may_block=True)
        self.origin = StaticFile("origin", b"")
        self.diff = DiffDir(self.store, self._rw_tree_sha)
        for child in (
            self.ctl,
            self.diff,
            self.merge_file,
            self.msg,
            self.origin,
            self.parents,
            self.rw_root,
        ):
            self.add(child)

    async def remove(self, child: Node) -> None:
        if child is self.rw_root:
            raise fserr.read_only_file()
        raise child.remove_error()

    # -- state -----------------------------------------------------------------

    @property
    def txn(self) -> st.Transaction:
        if self._txn is None:  # committed or closed; a stale fid sees nothing
            raise fserr.not_found()
        return self._txn

    def release(self) -> None:
        """Committed or closed: let the content go now (see RwTree.release)."""
        self.rw.release()
        self._txn = None

    def _rw_tree_sha(self) -> str:
        with store_errors():
            return self.rw.tree.write_tree()

    async def _prepare(self) -> None:
        """Before a merge or commit: no pending conflicts, the parents and
        message from their files, and big files' blobs written in a worker
        thread (a GiB takes seconds to hash and deflate; others are served
        meanwhile), so that the snapshot that follows is quick."""
        with store_errors():
            self.txn.check_resolved()
        self.txn.parents = parse_parents(self.store, bytes(self.parents.data))
        self.txn.message = bytes(self.msg.data)
        tree = self.rw.tree
        staged = tree.stage_big_files()
        if staged:
            with store_errors():
                shas = await self.writer.off_loop(tree.write_staged, staged)
            tree.note_staged(staged, shas)

    def _conflicts_text(self) -> bytes:
        return formats.render_paths(sorted(self.rw.tree.conflicts, key=conflict_order))

    # -- ctl -------------------------------------------------------------------

    async def _ctl(self, command: bytes) -> bytes:
        if command == b"commit":
            await self.commit()
            return b""
        if command == b"close":
            self.parent.discard(self)
            return b""
        text = command.decode("utf-8", "backslashreplace")
        escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
        raise FsError(f'Unknown command "{escaped}"', E.EINVAL)

    async def commit(self) -> None:
        await self._prepare()
        with store_errors():
            # The snapshot reads the tree: here, on the loop that edits it;
            # only the integration (a durable ref update) goes to the writer.
            commit = self.txn.snapshot()
            try:
                result = await self.writer(self.txn.integrate, commit)
            except st.MergeConflict:
                metrics.MERGES.inc()
                metrics.CONFLICTS.inc()
                raise
        if result.merged:
            metrics.MERGES.inc()
        metrics.COMMITS.inc()
        self.parent.discard(self)

    # -- merge ------------------------------------------------------------------

    async def _merge(self, text: bytes) -> bytes:
        store = self.store
        with store_errors():
            theirs = store.parse_commit_id(text.decode("utf-8", "replace"))
        await self._prepare()
        with store_errors():
            merge = self.txn.merge(theirs)
        self.parents.data.extend(formats.render_parents([theirs]))
        metrics.MERGES.inc()
        if merge.conflicts:
            metrics.CONFLICTS.inc()
        self.add(tree_view("base", store, fixed_tree(store, merge.base)))
        self.add(StaticFile("conflicts", self._conflicts_text))
        self.add(tree_view("ours", store, fixed_tree(store, merge.ours)))
        self.add(tree_view("theirs", store, fixed_tree(store, merge.theirs)))
        return b"ok"
