"""File-level three-way merge (spec 4.2) and commit integration (3.5)."""

from __future__ import annotations

import pytest

from datakit.store import EditableTree, Kind, MergeConflict, NotFastForward, NotFound, Store


def tree_of(store: Store, files: dict[str, bytes | tuple[Kind, bytes]]) -> str:
    t = store.edit(None)
    for path, value in files.items():
        kind, data = value if isinstance(value, tuple) else (Kind.FILE, value)
        t.put(tuple(path.split("/")), data, kind)
    return t.write_tree()


def contents(t: EditableTree, path: tuple[str, ...] = ()) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, kind in t.listdir(path):
        p = (*path, name)
        if kind is Kind.DIR:
            out.update(contents(t, p))
        else:
            out["/".join(p)] = t.read_all(p)
    return out


BASE = {
    "a": b"a-from-base",
    "b": b"b-from-base",
    "c": b"c-from-base",
    "d": b"d-from-base",
    "e": b"e-from-base",
    "f": b"f-from-base",
    "dir/a": b"dir/a",
    "dir2/b": b"dir2/b",
}
OURS = {
    "a": b"a-ours",
    "b": b"b-from-base",
    "c": b"c-ours",
    "e": b"e-from-base",
    "g": b"g-same",
    "h": b"h-ours",
    "dir": b"file dir",
    "dir2/b": b"dir2/b modified",
}
THEIRS = {
    "a": b"a-theirs",
    "b": b"b-theirs",
    "c": b"c-from-base",
    "d": b"d-from-base",
    "f": b"f-theirs",
    "g": b"g-same",
    "h": b"h-theirs",
    "dir/a": b"dir/a modified",
    "dir2": b"file dir2",
}


def conflict(reason: bytes) -> bytes:
    return b"** Conflict **\n" + reason + b"\n"


def test_worked_example(store: Store) -> None:
    base, ours, theirs = (tree_of(store, x) for x in (BASE, OURS, THEIRS))
    t = store.edit(ours)
    paths = t.merge(store.tree(ours), store.tree(theirs), store.tree(base))
    assert sorted(paths) == [("a",), ("dir",), ("dir2",), ("f",), ("h",)]
    assert t.conflicts == set(paths)
    assert [n for n, _ in t.listdir()] == ["a", "b", "c", "dir", "dir2", "f", "g", "h"]
    assert contents(t) == {
        "a": conflict(b"Changed on both branches"),
        "b": b"b-theirs",
        "c": b"c-ours",
        "dir": conflict(b"File vs dir"),
        "dir2": conflict(b"File vs dir"),
        "f": conflict(b"option: add/del"),
        "g": b"g-same",
        "h": conflict(b"default: add/add and no common ancestor"),
    }
    assert t.kind(("dir",)) is Kind.FILE
    # resolution as in the spec
    for p in ["a", "dir", "dir2"]:
        t.remove((p,))
    t.truncate(("f",), 0)
    t.write(("f",), 0, b"f-theirs")
    assert t.conflicts == {("h",)}
    t.remove(("h",))
    assert not t.conflicts
    result = store.tree(t.write_tree())
    assert [n for n, _ in result.listdir()] == ["b", "c", "f", "g"]
    assert result.read(("f",)) == b"f-theirs"


def test_metadata_example(store: Store) -> None:
    master = {
        "a": (Kind.EXEC, b"from-master"),
        "b": (Kind.LINK, b"from-master"),
        "c": (Kind.EXEC, b"from-master"),
    }
    base = tree_of(store, master)
    theirs = tree_of(store, {**master, "b": (Kind.EXEC, b"from-master"), "c": (Kind.LINK, b"foo")})
    t = store.edit(base)
    t.set_kind(("c",), Kind.FILE)
    ours = t.write_tree()
    assert t.merge(store.tree(ours), store.tree(theirs), store.tree(base)) == [("c",)]
    assert t.stat(("a",))[0] is Kind.EXEC  # type: ignore[index]
    assert t.stat(("b",))[0] is Kind.EXEC  # type: ignore[index]
    assert t.kind(("c",)) is Kind.FILE
    assert t.read_all(("c",)) == conflict(b"Changed on both branches")
    t.truncate(("c",), 0)
    t.write(("c",), 0, b"Resolved")
    t.set_kind(("c",), Kind.EXEC)
    assert not t.conflicts
    view = store.tree(t.write_tree())
    assert view.lookup(("c",)).kind is Kind.EXEC  # type: ignore[union-attr]


def test_merge_without_base_takes_theirs(store: Store) -> None:
    theirs = tree_of(store, {"x/y": b"1", "z": b"2"})
    t = store.edit(None)
    assert t.merge(store.empty_tree(), store.tree(theirs), None) == []
    assert t.write_tree() == theirs


def test_merge_subtree_shortcuts(store: Store) -> None:
    base = tree_of(store, {"keep/a": b"1", "gone/a": b"1", "mod/a": b"1", "mod/b": b"1"})
    ours = tree_of(store, {"keep/a": b"1", "mod/a": b"2", "mod/b": b"1", "new/o": b"o"})
    theirs = tree_of(store, {"keep/a": b"1", "mod/a": b"1", "mod/b": b"3", "new/t": b"t"})
    t = store.edit(ours)
    assert t.merge(store.tree(ours), store.tree(theirs), store.tree(base)) == []
    assert contents(t) == {
        "keep/a": b"1",
        "mod/a": b"2",
        "mod/b": b"3",
        "new/o": b"o",
        "new/t": b"t",
    }


def commit(store: Store, parents: list[str], files: dict[str, bytes], msg: bytes = b"m") -> str:
    return store.make_commit(tree_of(store, files), parents, msg)


def files_at(store: Store, commit_id: str) -> dict[str, bytes]:
    view = store.tree(store.commit_info(commit_id).tree)
    return {"/".join(p): view.read(p) for p, _ in view.walk_files()}


def test_integrate_rules(store: Store) -> None:
    c1 = commit(store, [], {"f": b"1"})
    assert store.integrate("master", c1) == c1  # no head
    c2 = commit(store, [c1], {"f": b"2"})
    assert store.integrate("master", c2) == c2  # head is a parent
    assert store.integrate("master", c1) == c2  # an ancestor: unchanged
    assert store.integrate("master", c2) == c2  # equal: unchanged
    c3 = commit(store, [c2], {"f": b"3"})
    c4 = commit(store, [c3], {"f": b"4"})
    assert store.integrate("master", c4) == c4  # LCA is the head
    assert store.head("master") == c4


def test_integrate_merges_concurrent_commits(store: Store) -> None:
    c0 = commit(store, [], {"x": b"0", "y": b"0"})
    store.integrate("master", c0)
    t2 = commit(store, [c0], {"x": b"T2", "y": b"0"}, b"From inner")
    assert store.integrate("master", t2) == t2
    t1 = commit(store, [c0], {"x": b"0", "y": b"T1"}, b"From outer")
    m = store.integrate("master", t1)
    info = store.commit_info(m)
    assert set(info.parents) == {t1, t2}
    assert info.message == b"Merge"
    assert files_at(store, m) == {"x": b"T2", "y": b"T1"}
    assert store.head("master") == m


def test_integrate_conflict(store: Store) -> None:
    c0 = commit(store, [], {"x": b"0"})
    store.integrate("master", c0)
    store.integrate("master", commit(store, [c0], {"x": b"T2"}))
    head = store.head("master")
    t1 = commit(store, [c0], {"x": b"T1"})
    with pytest.raises(MergeConflict) as e:
        store.integrate("master", t1)
    assert str(e.value).startswith("Merge conflict: ")
    assert store.head("master") == head


def test_integrate_criss_cross(store: Store) -> None:
    """Two LCAs: their trees are merged first (recursive merge)."""
    c0 = commit(store, [], {"a": b"0", "b": b"0", "c": b"0"})
    left = commit(store, [c0], {"a": b"L", "b": b"0", "c": b"0"})
    right = commit(store, [c0], {"a": b"0", "b": b"R", "c": b"0"})
    left2 = commit(store, [left, right], {"a": b"L", "b": b"R", "c": b"0"})
    right2 = commit(store, [right, left], {"a": b"L", "b": b"R", "c": b"0", "d": b"new"})
    left3 = commit(store, [left2], {"a": b"L", "b": b"R", "c": b"left3"})
    assert store.lcas(left3, right2) == sorted([left, right])
    store.integrate("master", left3)
    m = store.integrate("master", right2)
    assert files_at(store, m) == {"a": b"L", "b": b"R", "c": b"left3", "d": b"new"}


def test_lcas_and_ancestry(store: Store) -> None:
    c0 = commit(store, [], {"a": b"0"})
    c1 = commit(store, [c0], {"a": b"1"})
    c2 = commit(store, [c1], {"a": b"2"})
    d1 = commit(store, [c0], {"a": b"d"})
    other = commit(store, [], {"z": b"z"})
    assert store.lcas(c2, d1) == [c0]
    assert store.lcas(c2, c0) == [c0]
    assert store.lcas(c2, other) == []
    assert store.is_ancestor(c0, c2)
    assert store.is_ancestor(c2, c2)
    assert not store.is_ancestor(c2, c0)
    assert not store.is_ancestor(d1, c2)


def test_fast_forward_rules(store: Store) -> None:
    """Scenario E5."""
    h1 = commit(store, [], {"a": b"1"})
    h2 = commit(store, [h1], {"a": b"2"})
    h3 = commit(store, [h2], {"a": b"3"})
    other = commit(store, [h1], {"a": b"other"})
    store.fast_forward("new", h1)  # no head: set
    assert store.head("new") == h1
    store.fast_forward("new", h2)
    store.fast_forward("new", h2)  # equal: no-op
    with pytest.raises(NotFastForward) as e:
        store.fast_forward("new", h1)
    assert str(e.value) == "not-fast-forward"
    with pytest.raises(NotFastForward):
        store.fast_forward("new", other)
    store.fast_forward("new", h3)
    assert store.head("new") == h3
    with pytest.raises(NotFound):
        store.fast_forward("new", "1" * 40)


def test_empty_commit_changes_head(store: Store) -> None:
    """E16: every commit creates a new commit object even with no change."""
    c0 = commit(store, [], {"a": b"1"})
    store.integrate("master", c0)
    c1 = store.make_commit(store.commit_info(c0).tree, [c0], b"again")
    assert store.integrate("master", c1) == c1 != c0
    assert store.commit_info(c1).tree == store.commit_info(c0).tree


def test_many_interleaved_integrations_lose_nothing(store: Store) -> None:
    """100 transactions all started from the same head, committed in turn:
    every change survives through automatic merges."""
    c0 = commit(store, [], {"seed": b"0"})
    store.integrate("master", c0)
    base_tree = store.commit_info(c0).tree
    commits = []
    for i in range(100):
        t = store.edit(base_tree)
        t.put(("files", f"f{i:03}"), b"%d" % i)
        commits.append(store.make_commit(t.write_tree(), [c0], b"t%d" % i))
    for c in commits:
        store.integrate("master", c)
    final = files_at(store, store.head("master"))  # type: ignore[arg-type]
    assert len(final) == 101
    assert all(final[f"files/f{i:03}"] == b"%d" % i for i in range(100))
