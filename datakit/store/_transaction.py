"""A transaction on a branch and the one merge rule of the database.

:class:`Transaction` holds what the next commit of a branch will be made of
(an editable tree, the parents, the message), merges other commits into it
(spec filesystem.md §4) and integrates its commit into the branch (§3.5).
Both faces of the database are thin adapters over it: the 9p tree's
``transactions/<t>/`` directories (``datakit.fs.transactions``) and the Git
client backend, so they cannot drift apart.

The merge rule, for explicit merges and for the automatic merge of a commit
whose branch moved alike: the base is the lowest common ancestor of the two
commits. When there are several (a criss-cross history) they are merged
together, pairwise and recursively, into one virtual base commit, as git's
recursive strategy does; a conflict of that inner merge stays in the virtual
base as its conflict file, so a path the bases disagree about is a conflict
of the outer merge unless both sides agree. Picking one of the bases instead
would silently take one side, and which one would depend on the hash order.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import ConflictsRemain, MergeConflict
from ._objects import AUTHOR, Path

if TYPE_CHECKING:
    from ._store import BranchChange, Store
    from ._tree import EditableTree

MERGE_MESSAGE = b"Merge"
"""The message of a merge commit made by integration (upstream's server's)."""
VIRTUAL_BASE_MESSAGE = b"merged common ancestors"

Pair = tuple[str, str]


@dataclass(frozen=True)
class Merge:
    """What :meth:`Transaction.merge` did: the trees it merged, by id, and
    the paths that conflicted (each now holds a conflict file)."""

    ours: str
    theirs: str
    base: str | None  # None: no common ancestor (an empty base)
    conflicts: tuple[Path, ...]


@dataclass(frozen=True)
class Committed:
    """What integrating a commit into a branch did."""

    commit: str  # the commit integrated
    head: str  # the branch's head now
    merged: bool  # whether ``head`` is a merge commit made for it (the branch had moved)


def merge_base(store: Store, a: str, b: str) -> str | None:
    """The base commit of a merge of commits ``a`` and ``b``: their lowest
    common ancestor, a virtual one if they have several, None if none."""
    return _base_of(store, store.lcas(a, b))


def _base_of(store: Store, bases: list[str]) -> str | None:
    """One commit standing for ``bases`` (see :func:`_virtual_base`).

    The recursion runs on an explicit stack of generators: two branches
    that keep merging each other nest one level per round, and a long-lived
    pair of them would exceed Python's recursion limit."""
    stack = [_virtual_base(store, bases)]
    answer: str | None = None
    while stack:
        try:
            a, b = stack[-1].send(answer)
        except StopIteration as done:
            stack.pop()
            answer = done.value
        else:
            stack.append(_virtual_base(store, store.lcas(a, b)))
            answer = None
    return answer


def _virtual_base(store: Store, bases: list[str]) -> Generator[Pair, str | None, str | None]:
    """Merge ``bases`` pairwise, oldest first (as git does, so the result
    does not depend on hash order), each pair over its own merge base, which
    it asks its driver for by yielding the pair. The virtual commits have
    the merged pair as parents, so the next pair's base is found from them;
    they are stored unreferenced."""
    if not bases:
        return None
    infos = sorted((store.commit_info(c) for c in bases), key=lambda i: (i.time, i.id))
    acc = infos[0]
    for other in infos[1:]:
        base = yield acc.id, other.id
        tree = store.edit(acc.tree)
        _three_way(store, tree, acc.tree, other.tree, base)  # conflicts stay as files
        virtual = store.make_commit(
            tree.write_tree(),
            (acc.id, other.id),
            VIRTUAL_BASE_MESSAGE,
            when=max(acc.time, other.time),
        )
        acc = store.commit_info(virtual)
    return acc.id


def _three_way(
    store: Store, tree: EditableTree, ours: str, theirs: str, base: str | None
) -> list[Path]:
    """Merge tree ``theirs`` into ``tree`` (which holds tree ``ours``) over
    the tree of commit ``base``; the paths that conflicted."""
    base_view = store.tree(store.commit_info(base).tree) if base is not None else None
    return tree.merge(store.tree(ours), store.tree(theirs), base_view)


def integrate(
    store: Store,
    branch: str,
    commit: str,
    *,
    changes: list[BranchChange] | None = None,
) -> Committed:
    """Move ``branch`` to include ``commit`` (spec 3.5 step 4): set it if it
    has no head or ``commit`` descends from it, leave it if it already
    includes ``commit``, else make a merge commit of both (MergeConflict if
    that merge conflicts). Retried until the compare-and-swap wins.
    ``changes`` collects the branch change (see :meth:`Store.set_head`)."""
    store.check_branch_name(branch)
    info = store.commit_info(commit)
    while True:
        head = store.head(branch)
        if head == commit:
            return Committed(commit, head, False)
        new, merged = commit, False
        if head is not None and head not in info.parents:
            if commit in store.commit_info(head).parents:
                return Committed(commit, head, False)
            bases = store.lcas(commit, head)
            if commit in bases:
                return Committed(commit, head, False)
            if head not in bases:
                new, merged = _merge_commit(store, commit, head, bases), True
        if store.set_head(branch, new, expected=head, changes=changes):
            return Committed(commit, new, merged)


def _merge_commit(store: Store, ours: str, theirs: str, bases: list[str]) -> str:
    ours_tree = store.commit_info(ours).tree
    tree = store.edit(ours_tree)
    base = _base_of(store, bases)
    conflicts = _three_way(store, tree, ours_tree, store.commit_info(theirs).tree, base)
    if conflicts:
        raise MergeConflict(", ".join("/".join(p) for p in sorted(conflicts)))
    return store.make_commit(tree.write_tree(), (theirs, ours), MERGE_MESSAGE)


class Transaction:
    """The next commit of ``branch``: starts from its head (tree and parent)
    and, once committed, is integrated into it.

    ``parents`` and ``message`` are plain attributes the owner may replace
    (the 9p tree parses them from its ``parents`` and ``msg`` files at merge
    and commit time). Not thread-safe: one caller at a time, except that
    :meth:`integrate` touches no state of the transaction and may run in a
    worker thread while the tree is being edited.
    """

    def __init__(self, store: Store, branch: str, *, author: bytes = AUTHOR) -> None:
        self.store = store
        self.branch = branch
        self.author = author
        head = store.head(branch)
        self.tree = store.edit(store.commit_info(head).tree if head else None)
        self.parents: list[str] = [head] if head else []
        self.message = b""

    def __repr__(self) -> str:
        return f"<Transaction on {self.branch}>"

    def check_resolved(self) -> None:
        """ConflictsRemain while a merge's conflicts are not all resolved."""
        if self.tree.conflicts:
            raise ConflictsRemain()

    def snapshot(self) -> str:
        """A commit of the current tree, parents and message (stored,
        unreferenced until integrated)."""
        return self.store.make_commit(
            self.tree.write_tree(), self.parents, self.message, self.author
        )

    def merge(self, theirs: str) -> Merge:
        """Merge commit ``theirs`` into the tree (spec 4.1) and append it to
        the parents. "Ours" is a snapshot of the transaction; with no parents
        there is no base (the merge takes theirs wholesale)."""
        self.check_resolved()
        store = self.store
        ours = store.commit_info(self.snapshot())
        base = merge_base(store, ours.id, theirs) if self.parents else None
        theirs_tree = store.commit_info(theirs).tree
        conflicts = _three_way(store, self.tree, ours.tree, theirs_tree, base)
        self.parents.append(theirs)
        base_tree = store.commit_info(base).tree if base is not None else None
        return Merge(ours.tree, theirs_tree, base_tree, tuple(conflicts))

    def commit(self, *, changes: list[BranchChange] | None = None) -> Committed:
        """Make the commit and integrate it into the branch (MergeConflict
        if the branch moved and the automatic merge conflicts: the
        transaction stays usable). A server that integrates in a worker
        thread runs the same steps itself: check_resolved, snapshot (on the
        thread that edits the tree), then integrate (on the worker)."""
        self.check_resolved()
        return self.integrate(self.snapshot(), changes=changes)

    def integrate(self, commit: str, *, changes: list[BranchChange] | None = None) -> Committed:
        """Integrate ``commit`` (this transaction's :meth:`snapshot`) into the branch."""
        return integrate(self.store, self.branch, commit, changes=changes)
