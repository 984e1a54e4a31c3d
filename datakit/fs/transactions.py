"""`branch/<b>/transactions/<t>/`: rw, msg, parents, ctl, merge, diff and the merge views."""

from __future__ import annotations

import errno as E
from typing import TYPE_CHECKING

from datakit import metrics
from datakit import store as st
from datakit.fs.diffs import DiffDir
from datakit.fs.errors import store_errors
from datakit.fs.rw import RwTree
from datakit.fs.treeview import fixed_tree, tree_view
from datakit.vfs import (
    BufferFile,
    CommandFile,
    Directory,
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
    parents = []
    for line in text.split(b"\n"):
        if not line:
            continue
        with store_errors():
            parents.append(store.parse_commit_id(line.decode("utf-8", "replace")))
    return parents


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
        tx.rw.release()
        if self.children.get(tx.name) is tx:
            del self.children[tx.name]
        self.ctx.closed(tx)

    def discard_all(self) -> None:
        for tx in list(self.children.values()):
            self.discard(tx)


class TransactionDir(Directory):
    def __init__(self, name: str, parent: TransactionsDir) -> None:
        super().__init__(name)
        self.parent = parent
        self.branch = parent.branch
        self.ctx = parent.ctx
        store: st.Store = self.branch.store
        self.store = store
        head = store.head(self.branch.branch_name)
        base_tree = store.commit_info(head).tree if head else None
        self.rw = RwTree(store.edit(base_tree))
        self.rw_root = self.rw.node((), True)
        self.msg = BufferFile("msg")
        self.parents = BufferFile("parents", f"{head}\n".encode() if head else b"")
        # A commit or merge waits on worker threads (hashing a big file, a
        # durable ref update) for up to seconds: never on the read loop.
        self.ctl = CommandFile("ctl", self._ctl, may_block=True)
        self.merge_file = CommandFile("merge", self._merge, may_block=True)
        self.origin = StaticFile("origin", b"")
        self.diff = DiffDir(store, self._rw_tree_sha)
        self.merge_views: dict[str, Node] = {}
        self._fixed: dict[str, Node] = {
            "ctl": self.ctl,
            "diff": self.diff,
            "merge": self.merge_file,
            "msg": self.msg,
            "origin": self.origin,
            "parents": self.parents,
            "rw": self.rw_root,
        }

    # -- listing -------------------------------------------------------------

    def _children(self) -> dict[str, Node]:
        children = dict(self._fixed)
        children.update(self.merge_views)
        return dict(sorted(children.items()))

    async def lookup(self, name: str) -> Node:
        # Every request under a transaction walks through here: no listing.
        node = self._fixed.get(name) or self.merge_views.get(name)
        if node is None:
            raise fserr.not_found()
        return node

    async def entries(self) -> list[Node]:
        return list(self._children().values())

    async def remove(self, child: Node) -> None:
        if child is self.rw_root:
            raise fserr.read_only_file()
        raise child.remove_error()

    # -- state -----------------------------------------------------------------

    def _rw_tree_sha(self) -> str:
        with store_errors():
            return self.rw.tree.write_tree()

    async def _rw_tree_sha_off_loop(self) -> str:
        """The tree id, big files' blobs written in a worker thread first
        (a GiB takes seconds to hash and deflate; others are served meanwhile)."""
        tree = self.rw.tree
        staged = tree.stage_big_files()
        if staged:
            with store_errors():
                shas = await self.ctx.write.off_loop(tree.write_staged, staged)
            tree.note_staged(staged, shas)
        return self._rw_tree_sha()

    def _conflicts_text(self) -> bytes:
        paths = sorted(self.rw.tree.conflicts, key=conflict_order)
        return b"".join("/".join(p).encode("utf-8", "surrogateescape") + b"\n" for p in paths)

    def _message(self) -> bytes:
        return bytes(self.msg.data)

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
        if self.rw.tree.conflicts:
            raise FsError("conflicts file is not empty", E.EINVAL)
        parents = parse_parents(self.store, bytes(self.parents.data))
        tree_sha = await self._rw_tree_sha_off_loop()
        with store_errors():
            commit = self.store.make_commit(tree_sha, parents, self._message())
            before = self.store.head(self.branch.branch_name)
            try:
                after = await self.ctx.write(
                    self.store.integrate, self.branch.branch_name, commit
                )
            except st.MergeConflict:
                metrics.MERGES.inc()
                metrics.CONFLICTS.inc()
                raise
        if before is not None and after not in (commit, before) and before not in parents:
            metrics.MERGES.inc()  # integrate had to make a merge commit
        metrics.COMMITS.inc()
        self.parent.discard(self)

    # -- merge ------------------------------------------------------------------

    async def _merge(self, text: bytes) -> bytes:
        store = self.store
        with store_errors():
            theirs = store.parse_commit_id(text.decode("utf-8", "replace"))
        if self.rw.tree.conflicts:
            raise FsError("conflicts file is not empty", E.EINVAL)
        parents = parse_parents(store, bytes(self.parents.data))
        ours_tree = await self._rw_tree_sha_off_loop()
        with store_errors():
            ours = store.make_commit(ours_tree, parents, self._message())
            base_tree: str | None = None
            if parents:
                lcas = store.lcas(ours, theirs)
                if lcas:
                    base_tree = store.commit_info(sorted(lcas)[0]).tree
            theirs_tree = store.commit_info(theirs).tree
            conflicts = self.rw.tree.merge(
                store.tree(ours_tree),
                store.tree(theirs_tree),
                store.tree(base_tree) if base_tree else None,
            )
        self.parents.data.extend(f"{theirs}\n".encode())
        metrics.MERGES.inc()
        if conflicts:
            metrics.CONFLICTS.inc()
        self.merge_views = {
            "base": tree_view("base", store, fixed_tree(store, base_tree)),
            "conflicts": StaticFile("conflicts", self._conflicts_text),
            "ours": tree_view("ours", store, fixed_tree(store, ours_tree)),
            "theirs": tree_view("theirs", store, fixed_tree(store, theirs_tree)),
        }
        return b"ok"
