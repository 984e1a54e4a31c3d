"""The tree-entry name rule (store/_names.py) against git itself: every name
the rule refuses, `git fsck --strict` refuses in a tree too, and the names it
accepts pass."""

from __future__ import annotations

import subprocess

import pytest

from datakit.store import InvalidName, NameTooLong, check_name
from tests.gitrepo import blob, commit_tree, init_bare, literal_tree

REFUSED = [
    b"",
    b".",
    b"..",
    b"a/b",
    b".git",
    b".GIT",
    b".Git",
    b"git~1",
    b"GIT~1",
    b".git.",
    b".git ",
    b".git . .",
    b".git::$INDEX_ALLOCATION",
    b"git~1::$INDEX_ALLOCATION",
    b".git\\foo",
    b"foo\\.git",
    b"foo\\git~1",
    ".g\u200cit".encode(),
    "\ufeff.git".encode(),
    ".GI\u206at".encode(),
]
ACCEPTED = [
    b"a",
    b".gitignore",
    b".gitmodules",
    b"git",
    b".git2",
    b"git~2",
    b"..a",
    b"a.",
    b"x.git",
    b"\xff\xfe not utf-8",
    "caf\u00e9".encode(),
    b"a\\b",
    b"x" * 255,
]


@pytest.mark.parametrize("name", REFUSED)
def test_refused(name: bytes) -> None:
    with pytest.raises(InvalidName, match="Invalid name"):
        check_name(name)


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted(name: bytes) -> None:
    check_name(name)
    check_name(name.decode("utf-8", "surrogateescape"))


def test_nul_refused() -> None:
    with pytest.raises(InvalidName, match="NUL"):
        check_name("a\0b")


def test_too_long_for_a_checkout() -> None:
    with pytest.raises(NameTooLong, match="256 bytes"):
        check_name(b"x" * 256)


def test_gitmodules_may_not_be_a_symlink() -> None:
    check_name(".gitmodules")
    for name in (b".gitmodules", b".GITMODULES", b"gitmod~1", b".gitmodules "):
        with pytest.raises(InvalidName, match="symbolic link"):
            check_name(name, symlink=True)


def test_message_is_bounded() -> None:
    with pytest.raises(InvalidName) as err:
        check_name(b"/" * 10_000)
    assert len(str(err.value)) < 200


def _fsck_tree_with(tmp_path, name: bytes, mode: bytes = b"100644") -> subprocess.CompletedProcess:
    repo = init_bare(tmp_path / "r.git")
    tree = literal_tree(repo, [(mode, name, blob(repo, b"x"))])
    commit_tree(repo, tree, "t", branch="m")
    return subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True)


@pytest.mark.parametrize("name", [n for n in REFUSED if n and b"/" not in n])
def test_git_fsck_refuses_what_we_refuse(tmp_path, name: bytes) -> None:
    assert _fsck_tree_with(tmp_path, name).returncode != 0


@pytest.mark.parametrize("name", ACCEPTED)
def test_git_fsck_accepts_what_we_accept(tmp_path, name: bytes) -> None:
    result = _fsck_tree_with(tmp_path, name)
    assert result.returncode == 0, result.stderr


def test_git_fsck_refuses_a_gitmodules_symlink(tmp_path) -> None:
    assert _fsck_tree_with(tmp_path, b".gitmodules", b"120000").returncode != 0
