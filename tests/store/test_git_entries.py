"""Trees written by git round-trip exactly (issue #8, point 3).

The repositories are built by ``git`` itself; DataKit then commits on top
and ``git`` checks that every entry it wrote is still there, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit import store as st
from datakit.store import Entry, Kind, Store
from tests.gitrepo import literal_tree

SUB = "0123456789abcdef0123456789abcdef01234567"  # a commit of another repository


@pytest.fixture
def repo(tmp_path: Path, git) -> Path:  # type: ignore[no-untyped-def]
    """master: a gitlink ``sub``, ``dir/sub2`` and a file, committed by git."""
    path = tmp_path / "repo.git"
    git("init", "-q", "--bare", str(path))
    blob = git("hash-object", "-w", "--stdin", cwd=path, input=b"hello\n").strip()
    inner = git(
        "mktree", cwd=path, input=f"160000 commit {SUB}\tsub2\n100644 blob {blob}\tf\n".encode()
    ).strip()
    root = git(
        "mktree",
        cwd=path,
        input=(
            f"100644 blob {blob}\ta\n040000 tree {inner}\tdir\n160000 commit {SUB}\tsub\n"
        ).encode(),
    ).strip()
    commit = git("commit-tree", root, "-m", "by git", cwd=path).strip()
    git("update-ref", "refs/heads/master", commit, cwd=path)
    return path


def _commit_on_master(store: Store, edit) -> str:  # type: ignore[no-untyped-def]
    head = store.head("master")
    assert head is not None
    tree = store.edit(store.commit_info(head).tree)
    edit(tree)
    commit = store.make_commit(tree.write_tree(), [head], b"datakit")
    assert store.set_head("master", commit, expected=head)
    return commit


def test_gitlinks_survive_a_commit_through_datakit(repo: Path, git) -> None:  # type: ignore[no-untyped-def]
    with Store.open(repo) as store:
        # Touch the root and dir/ (both re-serialised), not the gitlinks.
        _commit_on_master(store, lambda t: (t.put(("new",), b"x"), t.put(("dir", "g"), b"y")))
    assert f"160000 commit {SUB}\tsub" in git("ls-tree", "master", cwd=repo)
    assert f"160000 commit {SUB}\tsub2" in git("ls-tree", "master:dir", cwd=repo)
    git("fsck", "--strict", cwd=repo)


def test_gitlink_is_a_read_only_entry_that_can_be_removed(repo: Path) -> None:
    with Store.open(repo) as store:
        head = store.head("master")
        assert head is not None
        view = store.tree(store.commit_info(head).tree)
        assert view.lookup(("sub",)) == Entry(Kind.GITLINK, SUB)
        # Its sha names a commit elsewhere: never read as a blob here.
        assert view.read(("sub",)) == SUB.encode() + b"\n"
        tree = store.edit(view.sha)
        assert tree.stat(("sub",)) == (Kind.GITLINK, 41)
        assert tree.read_all(("sub",)) == SUB.encode() + b"\n"
        for attempt in (
            lambda: tree.write(("sub",), 0, b"x"),
            lambda: tree.truncate(("sub",), 0),
            lambda: tree.set_kind(("sub",), Kind.EXEC),
        ):
            with pytest.raises(st.ReadOnlyEntry):
                attempt()
        assert tree.entry(("sub",)) == Entry(Kind.GITLINK, SUB)
        tree.remove(("sub",))
        assert tree.kind(("sub",)) is None
        assert "sub" not in dict(store.tree(tree.write_tree()).listdir())


def test_merge_and_diff_compare_gitlinks_by_sha(repo: Path, git) -> None:  # type: ignore[no-untyped-def]
    other = "89abcdef0123456789abcdef0123456789abcdef"
    with Store.open(repo) as store:
        base = store.head("master")
        assert base is not None
        base_tree = store.commit_info(base).tree
        # theirs (written by git) moves the submodule; ours edits something
        # else: the merge takes theirs.
        listing = git("ls-tree", base_tree, cwd=repo).replace(SUB, other)
        theirs = git("mktree", cwd=repo, input=listing.encode()).strip()
        assert store.diff(base_tree, theirs) == [("*", ("sub",))]
        ours_t = store.edit(base_tree)
        ours_t.put(("a",), b"changed")
        ours = ours_t.write_tree()
        merged = store.edit(ours)
        assert merged.merge(store.tree(ours), store.tree(theirs), store.tree(base_tree)) == []
        assert store.tree(merged.write_tree()).lookup(("sub",)) == Entry(Kind.GITLINK, other)
        assert store.tree(merged.write_tree()).lookup(("dir", "sub2")) == Entry(Kind.GITLINK, SUB)


@pytest.mark.parametrize(
    "mode",
    [b"160000", b"100664", b"100600", b"100700", b"140000", b"040000", b"0100644"],
)
def test_every_entry_git_accepts_is_re_serialised_exactly(tmp_path: Path, git, mode: bytes) -> None:  # type: ignore[no-untyped-def]
    """Entries of a directory DataKit edits keep their exact mode bytes (git
    fsck only warns about 100664 & co, and zero-padded modes without --strict)."""
    path = tmp_path / "repo.git"
    git("init", "-q", "--bare", str(path))
    blob = git("hash-object", "-w", "--stdin", cwd=path, input=b"data\n").strip()
    target = blob
    if mode.lstrip(b"0").startswith(b"4"):
        target = git("mktree", cwd=path, input=f"100644 blob {blob}\tinside\n".encode()).strip()
    elif mode == b"160000":
        target = SUB
    odd = (mode, b"odd\xff", target)
    root = literal_tree(path, [(b"100644", b"a", blob), odd])
    commit = git("commit-tree", root, "-m", "by git", cwd=path).strip()
    git("update-ref", "refs/heads/master", commit, cwd=path)
    with Store.open(path) as store:
        _commit_on_master(store, lambda t: t.put(("z",), b"new"))
    new_root = git("rev-parse", "master^{tree}", cwd=path).strip()
    expected = literal_tree(
        path, [(b"100644", b"a", blob), odd, (b"100644", b"z", blob_z(git, path))]
    )
    assert new_root == expected


def blob_z(git, path: Path) -> str:  # type: ignore[no-untyped-def]
    return git("hash-object", "--stdin", cwd=path, input=b"new").strip()


def test_an_edited_entry_keeps_gits_mode_until_its_kind_changes(tmp_path: Path, git) -> None:  # type: ignore[no-untyped-def]
    """Rewriting a 100664 file (in place, or replacing it as a client's
    replace_file does) keeps 100664; chmod +x makes it ours, 100755."""
    path = tmp_path / "repo.git"
    git("init", "-q", "--bare", str(path))
    blob = git("hash-object", "-w", "--stdin", cwd=path, input=b"data\n").strip()
    root = literal_tree(path, [(b"100664", b"a", blob), (b"100664", b"b", blob)])
    with Store.open(path) as store:
        tree = store.edit(root)
        tree.write(("a",), 0, b"D")
        tree.put(("b",), b"new")
        written = store.tree(tree.write_tree())
        assert written.lookup(("a",)).mode == b"100664"  # type: ignore[union-attr]
        assert written.read(("a",)) == b"Data\n"
        assert written.lookup(("b",)).mode == b"100664"  # type: ignore[union-attr]
        tree.set_kind(("b",), Kind.EXEC)
        assert store.tree(tree.write_tree()).lookup(("b",)).mode_bytes == b"100755"  # type: ignore[union-attr]
