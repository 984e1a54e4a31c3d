"""The store's Transaction (datakit/store/_transaction.py): what a
transaction starts from, its explicit merges (spec 4.1), its commit and
integration (3.5), the merge rule with several merge bases, and the branch
changes a write collects for its caller."""

from __future__ import annotations

import sys

import pytest

from datakit.store import (
    EMPTY_TREE,
    BranchChange,
    ConflictsRemain,
    MergeConflict,
    Store,
    Transaction,
    merge_base,
)
from tests.store.test_merge import commit, files_at

CONFLICT = b"** Conflict **\nChanged on both branches\n"


def start(store: Store, files: dict[str, bytes], branch: str = "master") -> str:
    head = commit(store, [], files)
    store.set_head(branch, head, expected=None)
    return head


def tree_files(store: Store, tree: str | None) -> dict[str, bytes]:
    view = store.tree(tree or EMPTY_TREE)
    return {"/".join(p): view.read(p) for p, _ in view.walk_files()}


def test_starts_from_the_head(store: Store) -> None:
    head = start(store, {"f": b"1"})
    t = Transaction(store, "master")
    assert t.parents == [head]
    assert t.tree.read_all(("f",)) == b"1"
    empty = Transaction(store, "new")
    assert empty.parents == []
    assert empty.tree.listdir() == []


def test_commit_on_an_unmoved_branch(store: Store) -> None:
    head = start(store, {"f": b"1"})
    t = Transaction(store, "master")
    t.tree.put(("g",), b"2")
    t.message = b"add g\n"
    done = t.commit()
    assert not done.merged
    assert done.head == done.commit == store.head("master")
    info = store.commit_info(done.commit)
    assert info.parents == (head,)
    assert info.message == b"add g\n"
    assert files_at(store, done.commit) == {"f": b"1", "g": b"2"}


def test_commit_on_a_moved_branch_merges(store: Store) -> None:
    head = start(store, {"f": b"1", "g": b"1"})
    t = Transaction(store, "master")
    t.tree.put(("f",), b"ours")
    other = commit(store, [head], {"f": b"1", "g": b"theirs"})
    store.set_head("master", other, expected=head)
    done = t.commit()
    assert done.merged
    assert done.head == store.head("master") != done.commit
    info = store.commit_info(done.head)
    assert info.parents == (other, done.commit)
    assert info.message == b"Merge"
    assert files_at(store, done.head) == {"f": b"ours", "g": b"theirs"}


def test_commit_conflicting_with_a_moved_branch(store: Store) -> None:
    head = start(store, {"f": b"1"})
    t = Transaction(store, "master")
    t.tree.put(("f",), b"ours")
    other = commit(store, [head], {"f": b"theirs"})
    store.set_head("master", other, expected=head)
    with pytest.raises(MergeConflict) as e:
        t.commit()
    assert str(e.value) == "Merge conflict: f"
    assert store.head("master") == other
    # still usable: merge the new head, resolve, commit
    assert t.merge(other).conflicts == (("f",),)
    t.tree.put(("f",), b"both")
    done = t.commit()
    assert not done.merged
    assert store.commit_info(done.head).parents == (head, other)


def test_merge_reports_its_inputs_and_appends_the_parent(store: Store) -> None:
    head = start(store, {"a": b"base", "b": b"base"})
    theirs = commit(store, [head], {"a": b"theirs", "b": b"base"})
    t = Transaction(store, "master")
    t.tree.put(("a",), b"ours")
    t.tree.put(("c",), b"new")
    merge = t.merge(theirs)
    assert merge.conflicts == (("a",),)
    assert tree_files(store, merge.ours) == {"a": b"ours", "b": b"base", "c": b"new"}
    assert tree_files(store, merge.theirs) == {"a": b"theirs", "b": b"base"}
    assert merge.base == store.commit_info(head).tree
    assert t.parents == [head, theirs]
    assert t.tree.read_all(("a",)) == CONFLICT
    with pytest.raises(ConflictsRemain) as e:
        t.merge(theirs)
    assert str(e.value) == "conflicts file is not empty"
    with pytest.raises(ConflictsRemain):
        t.commit()
    assert t.parents == [head, theirs]


def test_merge_without_parents_takes_theirs(store: Store) -> None:
    theirs = start(store, {"x/y": b"1"}, branch="other")
    t = Transaction(store, "empty")
    merge = t.merge(theirs)
    assert merge.base is None and merge.conflicts == ()
    done = t.commit()
    assert store.commit_info(done.head).parents == (theirs,)
    assert files_at(store, done.head) == {"x/y": b"1"}


def criss_cross(store: Store) -> tuple[str, str, list[str]]:
    """Left and right merge each other, each keeping its own ``f``."""
    c0 = commit(store, [], {"f": b"0", "h": b"0"})
    left = commit(store, [c0], {"f": b"L", "h": b"0"})
    right = commit(store, [c0], {"f": b"R", "h": b"0"})
    left2 = commit(store, [left, right], {"f": b"L", "h": b"0"})
    right2 = commit(store, [right, left], {"f": b"R", "h": b"right2"})
    return left2, right2, [left, right]


def test_several_bases_merge_into_a_virtual_one(store: Store) -> None:
    ours, theirs, bases = criss_cross(store)
    assert sorted(store.lcas(ours, theirs)) == sorted(bases)
    base = merge_base(store, ours, theirs)
    assert base is not None and base not in bases
    info = store.commit_info(base)
    assert sorted(info.parents) == sorted(bases)  # the next pair's base is found from them
    # the bases' own conflict stays in the virtual base, as its conflict file
    assert files_at(store, base) == {"f": CONFLICT, "h": b"0"}
    assert merge_base(store, theirs, ours) == base  # whichever side asks


def test_one_base_or_none(store: Store) -> None:
    c0 = commit(store, [], {"f": b"0"})
    a = commit(store, [c0], {"f": b"a"})
    b = commit(store, [c0], {"f": b"b"})
    assert merge_base(store, a, b) == c0
    assert merge_base(store, a, commit(store, [], {"z": b"z"})) is None


def test_explicit_and_automatic_merges_use_the_same_rule(store: Store) -> None:
    ours, theirs, _ = criss_cross(store)
    store.set_head("master", ours, expected=None)
    explicit = Transaction(store, "master")
    merge = explicit.merge(theirs)
    assert merge.conflicts == (("f",),)
    assert tree_files(store, merge.base) == {"f": CONFLICT, "h": b"0"}
    assert explicit.tree.read_all(("h",)) == b"right2"
    automatic = Transaction(store, "master")
    automatic.tree.put(("new",), b"n")
    store.set_head("master", theirs, expected=ours)
    with pytest.raises(MergeConflict) as e:
        automatic.commit()
    assert str(e.value) == "Merge conflict: f"


def test_three_bases(store: Store) -> None:
    """a and b agree about ``f``, c does not: the virtual base of the three
    has a conflict at ``f`` whatever order they are merged in."""
    c0 = commit(store, [], {"f": b"0", "g": b"0"})
    a = commit(store, [c0], {"f": b"1", "g": b"0", "p": b"a"})
    b = commit(store, [c0], {"f": b"1", "g": b"0", "q": b"b"})
    c = commit(store, [c0], {"f": b"2", "g": b"0"})
    both = {"p": b"a", "q": b"b"}
    x = commit(store, [a, b, c], {"f": b"1", "g": b"0", **both})
    y = commit(store, [c, b, a], {"f": b"2", "g": b"y", **both})
    assert sorted(store.lcas(x, y)) == sorted([a, b, c])
    base = merge_base(store, x, y)
    assert base is not None
    assert files_at(store, base) == {"f": CONFLICT, "g": b"0", **both}
    store.set_head("master", x, expected=None)
    t = Transaction(store, "master")
    assert t.merge(y).conflicts == (("f",),)
    assert t.tree.read_all(("g",)) == b"y"


def test_writes_collect_their_changes(store: Store) -> None:
    """With ``changes=``, a branch-moving write tells no listener: it hands
    its changes, in order, to its caller, who announces them."""
    seen: list[tuple[str, str | None]] = []
    store.add_listener(lambda b, h: seen.append((b, h)))
    head = start(store, {"f": b"1"})
    seen.clear()
    t = Transaction(store, "master")
    t.tree.put(("f",), b"2")
    changes: list[BranchChange] = []
    done = t.commit(changes=changes)
    store.rename_branch("master", "main", changes=changes)
    store.fast_forward("other", head, changes=changes)
    store.delete_branch("other", changes=changes)
    assert seen == []
    expected = [
        ("master", done.head),
        ("main", done.head),
        ("master", None),
        ("other", head),
        ("other", None),
    ]
    assert changes == expected
    store.announce(changes)
    assert seen == expected
    store.poll()  # announced changes are not reported again
    assert seen == expected


def test_bases_nested_deeper_than_the_recursion_limit(store: Store) -> None:
    """Two branches that keep merging each other: each round nests the
    virtual base one level deeper (its bases are the previous round's)."""
    c0 = commit(store, [], {"f": b"0"})
    left, right = commit(store, [c0], {"f": b"L"}), commit(store, [c0], {"f": b"R"})
    for n in range(sys.getrecursionlimit()):
        left, right = (
            commit(store, [left, right], {"f": b"L%d" % n}),
            commit(store, [right, left], {"f": b"R%d" % n}),
        )
    base = merge_base(store, left, right)
    assert base is not None and files_at(store, base) == {"f": CONFLICT}
