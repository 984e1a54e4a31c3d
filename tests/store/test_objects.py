"""Object hashes are git's, byte for byte."""

from __future__ import annotations

import pytest

from datakit.store import EMPTY_TREE, InvalidHash, Kind, NotFound, Store


def test_spec_hashes(store: Store) -> None:
    t = store.edit(None)
    assert t.write_tree() == EMPTY_TREE
    t.put(("README",), b"Instructions")
    assert t.write_tree() == "a3e8adf6d194bfbdec2ca73aebe0990edee2ddbf"
    t = store.edit(None)
    t.put(("src", "Makefile"), b"all: build")
    sha = t.write_tree()
    assert sha == "acaa8ac97706d94e012da475e8a63d647011a72c"
    view = store.tree(sha)
    entry = view.lookup(("src", "Makefile"))
    assert entry is not None
    assert entry.sha == "d81e367f87ee314bcd3e449b1c6641efda5bc269"
    assert store.read_blob(entry.sha) == b"all: build"
    assert store.object_type(entry.sha) == "blob"
    assert store.object_type(sha) == "tree"


def test_hashes_match_git_binary(tmp_path, git) -> None:  # type: ignore[no-untyped-def]
    s = Store.open(tmp_path / "r.git")
    t = s.edit(None)
    t.put(("a",), b"hello\n")
    t.put(("x.sh",), b"#!/bin/sh\n", Kind.EXEC)
    t.create_file(("link",), Kind.LINK, b"a")
    t.put(("dir", "b"), b"b")
    t.put(("dir.txt",), b"sorts before dir/ in git")
    t.put(("dir-x", "c"), b"")
    sha = t.write_tree()
    c = s.make_commit(sha, [], b"msg")
    assert s.set_head("master", c, expected=None)
    repo = str(tmp_path / "r.git")
    assert git("hash-object", "--stdin", input=b"hello\n").strip() == (
        s.tree(sha).lookup(("a",)).sha  # type: ignore[union-attr]
    )
    listing = git("ls-tree", sha, cwd=repo)
    assert git("mktree", cwd=repo, input=listing.encode()).strip() == sha
    assert "100755 blob" in listing and "120000 blob" in listing
    assert git("rev-parse", "master^{tree}", cwd=repo).strip() == sha
    assert git("cat-file", "-p", "master:link", cwd=repo) == "a"
    git("fsck", "--strict", cwd=repo)
    s.close()


def test_commit_format(store: Store) -> None:
    tree = store.edit(None).write_tree()
    c1 = store.make_commit(tree, [], b"", when=1234)
    info = store.commit_info(c1)
    assert info.message == b"(no commit message)"
    assert info.author == info.committer == b"datakit <datakit@mobyproject.org>"
    assert info.time == 1234
    assert info.parents == ()
    assert info.tree == tree
    c2 = store.make_commit(tree, [c1], b"hi\n")
    assert store.commit_info(c2).parents == (c1,)
    assert store.commit_info(c2).message == b"hi\n"
    assert store.has_commit(c2)
    assert not store.has_commit(tree)
    assert store.object_type(c2) == "commit"
    assert store.object_type("0" * 40) is None


def test_parse_commit_id(store: Store) -> None:
    c = store.make_commit(store.edit(None).write_tree(), [], b"x")
    assert store.parse_commit_id(c) == c
    assert store.parse_commit_id(c.upper()) == c
    with pytest.raises(InvalidHash) as e:
        store.parse_commit_id("zzz")
    assert str(e.value).startswith('invalid-hash "zzz": ')
    with pytest.raises(InvalidHash):
        store.parse_commit_id("g" * 40)
    with pytest.raises(NotFound) as e2:
        store.parse_commit_id("1" * 40)
    assert str(e2.value) == "No such file or directory"
    tree = store.edit(None).write_tree()
    with pytest.raises(NotFound):
        store.parse_commit_id(tree + "")  # a tree is not a commit
    with pytest.raises(NotFound):
        store.commit_info(tree)


def test_tree_view(store: Store) -> None:
    t = store.edit(None)
    t.put(("b",), b"B")
    t.put(("a", "x"), b"X", Kind.EXEC)
    t.put(("Z",), b"z")
    view = store.tree(t.write_tree())
    assert [n for n, _ in view.listdir()] == ["Z", "a", "b"]
    assert view.lookup(()).kind is Kind.DIR  # type: ignore[union-attr]
    assert view.lookup(("a", "x")).kind is Kind.EXEC  # type: ignore[union-attr]
    assert view.lookup(("b", "x")) is None
    assert view.lookup(("nope",)) is None
    assert view.read(("a", "x")) == b"X"
    with pytest.raises(NotFound):
        view.read(("nope",))
    from datakit.store import IsADirectory, NotADirectory

    with pytest.raises(IsADirectory):
        view.read(("a",))
    with pytest.raises(NotADirectory):
        view.listdir(("b",))
    with pytest.raises(NotFound):
        view.listdir(("c",))
    with pytest.raises(NotFound):
        store.tree("1" * 40)


def test_blob_size_reads_only_a_loose_objects_header(tmp_path, git) -> None:  # type: ignore[no-untyped-def]
    """`ls -l` of big files must not inflate them: a loose blob's size comes
    from its header, a packed one's (after `git gc`, stored whole) from its
    pack entry's header."""
    repo = tmp_path / "r.git"
    data = bytes(range(256)) * 4096  # 1 MiB
    with Store.open(repo) as s:
        t = s.edit(None)
        t.put(("big",), data)
        tree = t.write_tree()
        assert s.set_head("master", s.make_commit(tree, [], b"m"), expected=None)
        sha = s.tree(tree).lookup(("big",)).sha  # type: ignore[union-attr]
    for packed in (False, True):
        if packed:
            git("--git-dir", str(repo), "gc", "-q")
            assert not (repo / "objects" / sha[:2] / sha[2:]).exists()
        with Store.open(repo, create=False) as fresh:
            assert fresh.blob_size(sha) == len(data)
            assert fresh._db.blobs.get(sha) is None  # not inflated
            editable = fresh.edit(tree)
            assert editable.stat(("big",)) == (Kind.FILE, len(data))
            with pytest.raises(NotFound):
                fresh.blob_size(tree)  # a tree is not a blob
    assert git("--git-dir", str(repo), "cat-file", "-s", sha).strip() == str(len(data))
