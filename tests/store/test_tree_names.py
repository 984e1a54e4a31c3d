"""Issue 8, points 1, 2 and 14 at the store level: every edit that puts a
name into a tree applies the name rule and leaves the tree usable; trees
written elsewhere with entries git refuses, or not parseable at all, stay a
local problem; trees 4,096 levels deep commit, walk, diff and merge; branch
names too long for the ref store are NameTooLong on both kinds of store."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.store import (
    CorruptTree,
    EditableTree,
    Entry,
    InvalidBranchName,
    InvalidName,
    Kind,
    NameTooLong,
    Store,
)
from tests.gitrepo import blob, git, git_bytes, init_bare, literal_tree
from tests.gitrepo import commit_tree as git_commit_tree

BAD = [".git", ".GIT", "git~1", ".git.", "", ".", "..", "a/b", "a\0b"]


def fsck_strict(repo: Path) -> None:
    git(repo, "fsck", "--strict", "--no-dangling")


def commit_tree(store: Store, tree: EditableTree, branch: str = "master") -> str:
    sha = store.make_commit(tree.write_tree(), [], b"m")
    store.set_head(branch, sha, expected=store.head(branch))
    return sha


# -- point 1: names refused on every way into a tree ---------------------------


@pytest.mark.parametrize("name", BAD)
def test_every_edit_refuses_a_bad_name_and_the_tree_stays_usable(
    store: Store, tmp_path: Path, name: str
) -> None:
    tree = store.edit(None)
    tree.put(("keep",), b"k")
    tree.put(("link",), b"keep", Kind.LINK)
    edits = [
        lambda: tree.create_file((name,)),
        lambda: tree.create_file(("d", name), Kind.LINK, b"target"),
        lambda: tree.put((name,), b"x"),
        lambda: tree.mkdir((name,)),
        lambda: tree.mkdir((name, "sub")),
        lambda: tree.rename((), "keep", name),
        lambda: tree.force_put((name,), Kind.FILE, b"x"),
        lambda: tree.write((name,), 0, b"x"),
    ]
    for edit in edits:
        with pytest.raises(InvalidName, match="Invalid name"):
            edit()
    # Nothing half-done: no directory "d" made on the way, the rename undone.
    assert tree.listdir() == [("keep", Kind.FILE), ("link", Kind.LINK)]
    tree.put(("good",), b"g")
    commit_tree(store, tree)
    names = [n for n, _ in store.tree(store.commit_info(store.head("master") or "").tree).listdir()]
    assert names == ["good", "keep", "link"]
    if store.on_disk:
        fsck_strict(tmp_path / "repo.git")


def test_symlink_rules_and_long_names(store: Store) -> None:
    tree = store.edit(None)
    tree.put((".gitmodules",), b"[submodule]")  # a file may be called that
    with pytest.raises(InvalidName, match="symbolic link"):
        tree.create_file(("x", ".gitmodules"), Kind.LINK, b"t")
    with pytest.raises(InvalidName, match="symbolic link"):
        tree.set_kind((".gitmodules",), Kind.LINK, b"t")
    tree.put(("l",), b"t", Kind.LINK)
    with pytest.raises(InvalidName, match="symbolic link"):
        tree.rename((), "l", ".gitmodules")
    with pytest.raises(NameTooLong, match="256 bytes"):
        tree.create_file(("n" * 256,))
    with pytest.raises(NameTooLong):
        tree.mkdir(("n" * 256, "sub"))
    tree.create_file(("n" * 255,))
    assert sorted(n for n, _ in tree.listdir()) == [".gitmodules", "l", "n" * 255]


# -- point 2: trees written elsewhere ------------------------------------------


@pytest.fixture
def hostile_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A repository whose master holds entries git refuses, written by git
    itself: a root with `.git`, `..`, `.`, `a/b` and `` names next to good
    files, a good subdirectory, and a subdirectory whose tree holds a name
    with NUL (which shifts git's own parse: it cannot be read at all)."""
    repo = tmp_path / "repo.git"
    init_bare(repo)
    f = blob(repo, b"file\n")
    sub = literal_tree(repo, [(b"100644", b"inner", f)])
    nul = literal_tree(repo, [(b"100644", b"a\0b", f), (b"100644", b"z", f)])
    dotgit = literal_tree(repo, [(b"100644", b"config", f)])
    root = literal_tree(
        repo,
        [
            (b"100644", b"", f),
            (b"100644", b".", f),
            (b"40000", b"..", sub),
            (b"40000", b".git", dotgit),
            (b"100644", b"a/b", f),
            (b"40000", b"broken", nul),
            (b"100644", b"good", f),
            (b"40000", b"sub", sub),
        ],
    )
    commit = git_commit_tree(repo, root, "hostile", branch="master")
    return repo, {"root": root, "sub": sub, "broken": nul, "commit": commit}


def raw_tree(repo: Path, sha: str) -> bytes:
    return git_bytes(repo, "cat-file", "tree", sha)


def test_entries_git_refuses_are_hidden_and_kept(hostile_repo: tuple[Path, dict[str, str]]) -> None:
    repo, shas = hostile_repo
    with Store.open(repo) as store:
        view = store.tree(shas["root"])
        assert [n for n, _ in view.listdir()] == ["broken", "good", "sub"]
        for name in (".git", "..", ".", "", "a/b"):
            assert view.lookup((name,)) is None  # a lookup is just "not there"
        assert view.read(("sub", "inner")) == b"file\n"
        # A transaction on top: the root is rewritten, its hidden entries kept
        # byte for byte; the untouched subtrees keep their ids.
        tree = store.edit(shas["root"])
        tree.put(("new",), b"n")
        tree.remove(("good",))
        new_root = commit_tree(store, tree)
    old_raw, new_raw = raw_tree(repo, shas["root"]), raw_tree(repo, store_tree_of(repo, new_root))
    for name in (b"", b".", b"..", b".git", b"a/b"):
        start = old_raw.index(b" " + name + b"\0") - 6
        entry = old_raw[start : old_raw.index(b"\0", start) + 21]
        assert entry in new_raw
    assert b"40000 broken\0" + bytes.fromhex(shas["broken"]) in new_raw
    assert b"40000 sub\0" + bytes.fromhex(shas["sub"]) in new_raw
    assert b" good\0" not in new_raw and b" new\0" in new_raw


def store_tree_of(repo: Path, commit: str) -> str:
    return git(repo, "rev-parse", f"{commit}^{{tree}}")


def test_a_tree_that_cannot_be_parsed_fails_alone(
    hostile_repo: tuple[Path, dict[str, str]],
) -> None:
    repo, shas = hostile_repo
    with Store.open(repo) as store:
        view = store.tree(shas["root"])
        with pytest.raises(CorruptTree, match=f"corrupt tree {shas['broken']}: "):
            view.listdir(("broken",))
        with pytest.raises(CorruptTree):
            view.lookup(("broken", "z"))
        assert store.tree(shas["broken"]).sha == shas["broken"]  # a tree, just unreadable
        with pytest.raises(CorruptTree):
            store.diff(shas["sub"], shas["broken"])
        # Commits elsewhere in the branch work and keep the broken tree as is.
        tree = store.edit(shas["root"])
        with pytest.raises(CorruptTree):
            tree.put(("broken", "x"), b"x")
        tree.put(("sub", "more"), b"m")
        commit_tree(store, tree)
        after = store.tree(store.commit_info(store.head("master") or "").tree)
        assert after.lookup(("broken",)) == Entry(Kind.DIR, shas["broken"])
        assert after.read(("sub", "more")) == b"m"
        # Removing the broken directory is an edit like any other.
        tree = store.edit(after.sha)
        tree.remove(("broken",))
        commit_tree(store, tree)


def test_a_merge_through_a_corrupt_tree_changes_nothing(
    hostile_repo: tuple[Path, dict[str, str]],
) -> None:
    repo, shas = hostile_repo
    with Store.open(repo) as store:
        ours = store.edit(shas["root"])
        ours.put(("sub", "ours"), b"o")
        ours_sha = ours.write_tree()
        theirs = store.edit(shas["root"])
        theirs.put(("sub", "theirs"), b"t")
        theirs.remove(("broken",))
        # A merge whose walk must enter the unreadable tree (the base's
        # "broken"): both sides replaced it. Theirs also adds "aaa", an edit
        # the walk meets before "broken".
        mine = store.edit(ours_sha)
        mine.remove(("broken",))
        mine.put(("broken", "y"), b"mine")
        mine_sha = mine.write_tree()
        t2 = store.edit(shas["root"])
        t2.remove(("broken",))
        t2.put(("broken", "z"), b"new")
        t2.put(("aaa",), b"first")
        t2_sha = t2.write_tree()
        tree = store.edit(mine_sha)
        with pytest.raises(CorruptTree):
            tree.merge(store.tree(mine_sha), store.tree(t2_sha), store.tree(shas["root"]))
        assert tree.write_tree() == mine_sha  # untouched by the failed merge
        tree = store.edit(ours_sha)
        # A merge that needs only readable trees works, hidden entries kept.
        tree.merge(store.tree(ours_sha), store.tree(theirs.write_tree()), store.tree(shas["root"]))
        merged = tree.write_tree()
        assert store.tree(merged).read(("sub", "theirs")) == b"t"
        assert store.tree(merged).lookup(("broken",)) is None  # removed by theirs
        assert b" .git\0" in raw_tree_of(store, merged)


def raw_tree_of(store: Store, sha: str) -> bytes:
    raw = store._db.get_raw(sha)
    assert raw is not None
    return raw[1]


# -- point 14: depth and branch-name length ------------------------------------

DEPTH = 4096  # git's core.maxTreeDepth: a path of 4,096 components


def test_a_tree_as_deep_as_git_allows(store: Store, tmp_path: Path) -> None:
    chain = ("d",) * (DEPTH - 1)
    tree = store.edit(None)
    tree.put((*chain, "f"), b"bottom")
    first = commit_tree(store, tree)
    view = store.tree(store.commit_info(first).tree)
    assert view.read((*chain, "f")) == b"bottom"
    assert list(view.walk_files()) == [((*chain, "f"), view.lookup((*chain, "f")))]
    # Edit at the bottom of a loaded (not freshly built) tree, then diff.
    tree = store.edit(view.sha)
    tree.put((*chain, "g"), b"g")
    second = commit_tree(store, tree)
    new_tree = store.commit_info(second).tree
    assert store.diff(view.sha, new_tree) == [("+", (*chain, "g"))]
    assert store.diff(new_tree, store.edit(None).write_tree()) == [
        ("-", (*chain, "f")),
        ("-", (*chain, "g")),
    ]
    # A merge that walks all the way down: both sides changed the chain.
    ours = store.edit(view.sha)
    ours.put((*chain, "ours"), b"o")
    conflicts = ours.merge(store.tree(ours.write_tree()), store.tree(new_tree), view)
    assert conflicts == []
    assert store.tree(ours.write_tree()).read((*chain, "g")) == b"g"
    if store.on_disk:
        fsck_strict(tmp_path / "repo.git")


@pytest.mark.parametrize(
    "name",
    ["b" * 251, "b" * 300, "ok/" + "c" * 251, "/".join(["p" * 200] * 11)],
    ids=["251", "300", "component-251", "total-2210"],
)
def test_branch_names_too_long_for_the_ref_store(store: Store, name: str) -> None:
    commit = store.make_commit(store.edit(None).write_tree(), [], b"m")
    with pytest.raises(NameTooLong, match="Branch name too long"):
        store.set_head(name, commit, expected=None)
    with pytest.raises(NameTooLong):
        store.fast_forward(name, commit)
    with pytest.raises(NameTooLong):
        store.check_branch_name(name)
    assert not store.is_valid_branch_name(name)
    assert store.head(name) is None
    assert store.branches() == []


def test_branch_names_at_the_limit(store: Store) -> None:
    commit = store.make_commit(store.edit(None).write_tree(), [], b"m")
    for name in ("b" * 250, "/".join(["p" * 250] * 8)):
        assert store.set_head(name, commit, expected=None)
        assert store.head(name) == commit
    with pytest.raises(InvalidBranchName):
        store.check_branch_name("a..b")
