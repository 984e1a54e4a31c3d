"""Store.open: opening and creating repositories, HEAD and compression
(what the Git client backend does through the store, not through dulwich)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from datakit.store import EMPTY_TREE, Kind, NotFound, Store, StoreError
from tests.gitrepo import git


def _commit(store: Store, branch: str = "master") -> str:
    sha = store.make_commit(EMPTY_TREE, [], b"m")
    assert store.set_head(branch, sha, expected=None)
    return sha


def test_creates_a_bare_repository(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.git") as s:
        sha = _commit(s)
        assert s.checked_out_branch() is None
    assert git(tmp_path / "r.git", "rev-parse", "--is-bare-repository") == "true"
    assert git(tmp_path / "r.git", "rev-parse", "master") == sha


def test_creates_a_git_directory_inside_its_work_tree(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with Store.open(work, work_tree=work) as s:
        assert s.path == str(work / ".git")
        _commit(s)
        assert s.checked_out_branch() == "master"
    assert git(work, "rev-parse", "--is-inside-work-tree") == "true"
    assert [p.name for p in work.iterdir()] == [".git"]  # the work tree is not written


def test_creates_a_separate_git_directory(tmp_path: Path) -> None:
    gitdir, work = tmp_path / "elsewhere.git", tmp_path / "work"
    with Store.open(gitdir, work_tree=work) as s:
        _commit(s)
        assert s.checked_out_branch() == "master"
    assert work.is_dir() and not any(work.iterdir())
    assert git(gitdir, "config", "core.worktree") == str(work)
    assert git(gitdir, "rev-parse", "--is-bare-repository") == "false"


def test_an_existing_repository_is_opened_whatever_work_tree_says(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.git") as s:
        sha = _commit(s)
    with Store.open(tmp_path / "r.git", work_tree=tmp_path, create=False) as s:
        assert s.head("master") == sha
        assert s.checked_out_branch() is None


def test_without_create_a_missing_repository_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        Store.open(tmp_path / "missing", create=False)
    with pytest.raises(NotFound):
        Store.open(tmp_path, create=False)  # an empty directory
    assert not (tmp_path / "missing").exists() and not any(tmp_path.iterdir())


def test_something_else_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a repository")
    for path in (tmp_path, tmp_path / "notes.txt"):
        with pytest.raises(StoreError, match="exists and is not a git repository"):
            Store.open(path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_default_branch(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.git") as s:
        s.set_default_branch("refs/heads/main")
    assert git(tmp_path / "r.git", "symbolic-ref", "HEAD") == "refs/heads/main"


@pytest.mark.parametrize("level", [0, 9])
def test_compression_is_recorded_and_used_at_once(tmp_path: Path, level: int) -> None:
    repo = tmp_path / "r.git"
    data = b"datakit " * 4096
    with Store.open(repo) as s:
        s.set_compression(level)
        tree = s.edit(None)
        tree.put(("f",), data, Kind.FILE)
        s.persist(s.make_commit(tree.write_tree(), [], b"m"))
    assert git(repo, "config", "core.compression") == str(level)
    assert git(repo, "config", "core.looseCompression") == str(level)
    sha = git(repo, "hash-object", "--stdin", input=data)
    raw = (repo / "objects" / sha[:2] / sha[2:]).read_bytes()
    assert zlib.decompress(raw) == b"blob %d\0" % len(data) + data
    assert (len(raw) > len(data)) == (level == 0)


def test_compression_out_of_range_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.git") as s, pytest.raises(ValueError):
        s.set_compression(10)
    assert "compression" not in (tmp_path / "r.git" / "config").read_text()


def test_a_memory_store_has_no_checked_out_branch() -> None:
    assert Store.memory().checked_out_branch() is None
