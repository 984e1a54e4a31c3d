"""Issue 8, points 1 and 14 through the client API, on every backend (the
9p one against a real server, on a memory and a ``--git`` store, and the Git
one): names git refuses and names too long are refused with the same error
class and message, the transaction stays usable, and what is committed
passes ``git fsck --strict``."""

from __future__ import annotations

import errno
import subprocess

import pytest

from datakit.client import (
    BackendError,
    Connection,
    DoesNotExist,
    InvalidName,
    InvalidPath,
    NameTooLong,
)
from tests.client.conftest import Backend
from tests.client.helpers import head_or_fail

REFUSED = [".git", ".GIT", "git~1", "GIT~1", ".git.", ".git::$INDEX_ALLOCATION", ".g\u200cit"]


def refusal(fn: object, *args: object) -> InvalidName:
    with pytest.raises(InvalidName) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


@pytest.mark.parametrize("name", REFUSED)
def test_creating_a_name_git_refuses(conn: Connection, backend: Backend, name: str) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.create_dir("d")
        messages = {
            str(refusal(t.create_file, name, b"x")),
            str(refusal(t.create_file, f"d/{name}", b"x", True)),
            str(refusal(t.create_dir, name)),
            str(refusal(t.create_symlink, f"d/{name}", "target")),
            str(refusal(t.create_or_replace_file, name, b"x")),
        }
        # One message, naming the name and the reason, on every backend.
        assert len(messages) == 1
        (message,) = messages
        assert message.startswith("Invalid name ") and "git reserves the name .git" in message
        # A lookup of such a name is just "not there".
        assert t.stat(name) is None
        with pytest.raises(DoesNotExist):
            t.read(name)
        # The transaction is still usable and commits.
        t.create_file("d/good", b"g")
        t.commit("after refusals")
    tree = head_or_fail(conn, "master").tree()
    assert tree.read_dir("") == ["d"] and tree.read_dir("d") == ["good"]
    fsck(backend)


def test_gitmodules_symlink_and_long_names(conn: Connection, backend: Backend) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.create_file(".gitmodules", b"")  # a file may have that name
        with pytest.raises(InvalidName, match="symbolic link"):
            t.create_symlink("GITMOD~1", "x")
        with pytest.raises(NameTooLong, match=r"Name too long \(256 bytes, at most 255\)"):
            t.create_file("n" * 256, b"x")
        with pytest.raises(NameTooLong):
            t.create_dir("\u00e9" * 128)  # 256 bytes in UTF-8
        t.create_file("n" * 255, b"x")
        # "", ".", ".." and "/" never reach a backend: they are not path steps.
        with pytest.raises(InvalidPath):
            t.create_file("a/../b", b"x")
        t.commit("long names")
    assert head_or_fail(conn, "master").tree().read_dir("") == [".gitmodules", "n" * 255]
    fsck(backend)


def test_branch_names_too_long(conn: Connection) -> None:
    conn.branch("b" * 250).transaction().abort()
    with pytest.raises(NameTooLong, match="Branch name too long"):
        conn.branch("b" * 251)
    with pytest.raises(NameTooLong):
        conn.remove_branch("b" * 300)


def fsck(backend: Backend) -> None:
    if backend.repo is not None:
        subprocess.run(
            ["git", "--git-dir", str(backend.repo), "fsck", "--strict", "--no-dangling"],
            check=True,
            capture_output=True,
        )


def test_gitmodules_must_be_a_file(conn: Connection, backend: Backend) -> None:
    """git's fsck refuses a tree whose .gitmodules (or a name NTFS or HFS+
    opens as it) is not a blob: "non-blob found at .gitmodules"."""
    master = conn.branch("master")
    with master.transaction() as t:
        for name in (".gitmodules", ".GitModules", "GITMOD~1", "gi7eba~1", ".gitmodules "):
            with pytest.raises(InvalidName, match="must be a file"):
                t.create_dir(name)
            with pytest.raises(InvalidName, match="must be a file"):
                t.make_dirs(f"{name}/sub")
        t.create_file("GITMOD~1", b"")  # as a file it is fine
        t.commit("files only")
    assert head_or_fail(conn, "master").tree().read_dir("") == ["GITMOD~1"]
    fsck(backend)


def test_a_gitmodules_git_refuses_is_not_committed(conn: Connection, backend: Backend) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.create_file(".gitmodules", b'[submodule "../../x"]\n\tpath = x\n\turl = https://e/x\n')
        with pytest.raises(BackendError) as info:
            t.commit("a submodule escaping .git/modules")
        assert info.value.errno == errno.EINVAL
        assert str(info.value).startswith("Invalid .gitmodules file '.gitmodules': bad submodule")
        # The transaction is still open; fixed, it commits.
        t.replace_file(".gitmodules", b'[submodule "x"]\n\tpath = x\n\turl = https://e/x\n')
        t.commit("a good one")
    assert head_or_fail(conn, "master").tree().read_dir("") == [".gitmodules"]
    fsck(backend)
