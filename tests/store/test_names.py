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


# Every name NTFS opens as .gitmodules, as git's is_ntfs_dotgitmodules knows
# them: the 8.3 short names gitmod~1 to ~4 and the hashed fall-back gi7eba~N
# (cut before a '~' and digits to 8 characters), also after a backslash.
SYMLINK_REFUSED = [
    b"gitmod~2",
    b"GITMOD~4",
    b"gitmod~3. .",
    b"gitmod~2:stream",
    b"gi7eba~1",
    b"GI7EBA~9",
    b"gi7eb~12",
    b"gi7e~123 ",
    b"a\\gitmod~4",
    b".gitmodules:x",
    b"~1234567",  # the hashed short name cut to nothing before the '~'
    b"g~123456",
]
# ... and names that only look alike, which git stores as symlinks.
SYMLINK_ACCEPTED = [
    b"gitmod~5",
    b"gitmod~10",
    b"gi7eba~0",
    b"gi7ebax~1",
    b".gitmodules\\x",
    b"gitmod~1\\x",
    b".gitmodulesx",
]


@pytest.mark.parametrize("name", SYMLINK_REFUSED)
def test_symlink_names_git_refuses_are_refused(tmp_path, name: bytes) -> None:
    assert _fsck_tree_with(tmp_path, name, b"120000").returncode != 0
    with pytest.raises(InvalidName, match="symbolic link"):
        check_name(name, symlink=True)
    check_name(name)  # as a file it is fine


@pytest.mark.parametrize("name", SYMLINK_ACCEPTED)
def test_symlink_names_git_accepts_are_accepted(tmp_path, name: bytes) -> None:
    result = _fsck_tree_with(tmp_path, name, b"120000")
    assert result.returncode == 0, result.stderr
    check_name(name, symlink=True)


@pytest.mark.parametrize("name", [b".gitmodules", b".GITMODULES", b"gitmod~2", b"gi7eba~1"])
def test_gitmodules_may_not_be_a_directory(tmp_path, name: bytes) -> None:
    repo = init_bare(tmp_path / "r.git")
    sub = literal_tree(repo, [(b"100644", b"f", blob(repo, b"x"))])
    commit_tree(repo, literal_tree(repo, [(b"40000", name, sub)]), "t", branch="m")
    result = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True)
    assert b"non-blob found at .gitmodules" in result.stderr
    with pytest.raises(InvalidName, match="must be a file"):
        check_name(name, directory=True)
