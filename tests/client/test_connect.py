"""``connect``: addresses, and the Git backend's repository options."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datakit.client import BackendError, connect
from datakit.client.git_backend import GitConnection
from datakit.client.ninep_backend import NinepConnection
from tests.client.helpers import commit_files, head_or_fail


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, check=True)
    return out.stdout.decode().strip()


@pytest.mark.parametrize("address", ["file:///tmp/dk.sock", "http://localhost/", "9p://x"])
def test_unknown_schemes_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="unsupported scheme"):
        connect(address)


@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_tcp_port_out_of_range_is_refused(port: str) -> None:
    with pytest.raises(ValueError, match="not between 1 and 65535"):
        connect(f"tcp://127.0.0.1:{port}")


def test_unix_address(server: str) -> None:
    with connect(server) as conn:
        assert isinstance(conn, NinepConnection)
        assert conn.client.dialect.value == "9P2000.u"
        assert conn.branches() == []


def test_unknown_option_is_an_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        connect(server, author="x")
    with pytest.raises(TypeError):
        connect(tmp_path / "repo", msize=8192)


def test_tcp_address_with_a_server_process(tmp_path: Path) -> None:
    """``tcp://HOST:PORT`` against a real ``python -m datakit serve``."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "datakit", "serve", "--listen-9p", f"tcp://127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = connect(f"tcp://127.0.0.1:{port}", timeout=10)
                break
            except OSError:
                assert proc.poll() is None, "server exited"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        with conn:
            commit_files(conn.branch("master"), {"f": b"over tcp"})
            assert head_or_fail(conn, "master").tree().read_file("f") == b"over tcp"
    finally:
        proc.terminate()
        proc.wait(10)


def test_git_backend_creates_a_bare_repository(tmp_path: Path) -> None:
    repo = tmp_path / "new.git"
    with connect(repo) as conn:
        assert isinstance(conn, GitConnection)
        commit_files(conn.branch("master"), {"f": b"x"}, "first")
        head = head_or_fail(conn, "master")
    assert (repo / "HEAD").exists() and (repo / "objects").is_dir()
    assert git(repo, "rev-parse", "refs/heads/master") == head.id
    assert git(repo, "log", "-1", "--format=%an <%ae>|%B", "master") == (
        "datakit <datakit@mobyproject.org>|first"
    )


def test_git_backend_with_a_work_tree(tmp_path: Path) -> None:
    path = tmp_path / "work"
    with connect(path, bare=False) as conn:
        commit_files(conn.branch("master"), {"f": b"x"})
    assert (path / ".git" / "HEAD").exists()
    assert not (path / "f").exists()  # the work tree is never touched
    # Reopening finds the repository in path/.git.
    with connect(path) as conn:
        assert conn.branches() == ["master"]


def test_git_backend_options(tmp_path: Path) -> None:
    repo = tmp_path / "opts.git"
    with connect(repo, author="Jane Doe <jane@example.com>", head="main", compression=9) as c:
        commit_files(c.branch("main"), {"f": b"x"})
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "main") == (
        "Jane Doe <jane@example.com>|Jane Doe <jane@example.com>"
    )
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "config", "core.compression") == "9"
    with connect(repo, author="robot") as c:
        commit_files(c.branch("main"), {"g": b"y"})
    assert git(repo, "log", "-1", "--format=%an <%ae>", "main") == (
        "robot <datakit@mobyproject.org>"
    )


@pytest.mark.parametrize("level", [0, 9])
def test_git_backend_compression_level_is_used_for_loose_objects(
    tmp_path: Path, level: int
) -> None:
    repo = tmp_path / "z.git"
    data = b"datakit " * 16384  # 128 KiB that zlib shrinks to almost nothing
    with connect(repo, compression=level) as c:
        commit_files(c.branch("master"), {"big": data})
    sha = git(repo, "rev-parse", "master:big")
    size = (repo / "objects" / sha[:2] / sha[2:]).stat().st_size
    if level == 0:
        assert size > len(data)  # stored, not deflated
    else:
        assert size < len(data) // 100
    assert git(repo, "cat-file", "-s", sha) == str(len(data))
    git(repo, "fsck", "--strict")


def test_git_backend_git_dir_option(tmp_path: Path) -> None:
    gitdir = tmp_path / "elsewhere.git"
    with connect(tmp_path / "work", git_dir=gitdir) as conn:
        commit_files(conn.branch("master"), {"f": b"x"})
    assert git(gitdir, "ls-tree", "--name-only", "master") == "f"


def test_git_backend_refuses_a_non_repository(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a repository")
    with pytest.raises(BackendError):
        connect(tmp_path)
    with pytest.raises(BackendError):
        connect(tmp_path / "notes.txt")


def test_git_backend_accepts_path_objects_and_strings(tmp_path: Path) -> None:
    with connect(os.fspath(tmp_path / "r")) as a, connect(tmp_path / "r") as b:
        commit_files(a.branch("master"), {"f": b"x"})
        assert b.branches() == ["master"]
