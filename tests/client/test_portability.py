"""A script written against the API runs unchanged on either backend and
produces the same data; and the two backends interoperate on one
repository."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from datakit.client import Commit, Connection, connect
from tests.client.helpers import commit_files, dump, git_tree_hash, head_or_fail
from tests.serverthread import running_server


def example_script(conn: Connection) -> Commit:
    """Exercises most writes, a fork, a merge with a conflict resolved by
    hand, and a nested transaction; returns master's final head."""
    master = conn.branch("master")
    with master.transaction() as t:
        t.make_dirs("src/lib")
        t.create_file("src/lib/util.py", b"def f(): pass\n")
        t.create_file("run.sh", b"#!/bin/sh\necho hi\n", executable=True)
        t.create_symlink("latest", "run.sh")
        t.create_file("README", b"Hello")
        t.commit("initial")
    base = head_or_fail(conn, "master")
    feature = conn.branch("feature")
    feature.fast_forward(base)
    with feature.transaction() as t:
        t.replace_file("README", b"Hello from feature")
        t.create_file("src/feature.py", b"x = 1\n")
        t.set_executable("run.sh", False)
        t.commit("feature work")
    with master.transaction() as t:
        t.replace_file("README", b"Hello from master")
        t.truncate("src/lib/util.py", 4)
        t.commit("master work")
    with master.transaction() as t:
        _, conflicts = t.merge(head_or_fail(conn, "feature"))
        assert conflicts == ["README"]
        t.replace_file("README", b"Hello from both")
        with master.transaction() as inner:
            inner.create_file("inner", bytes(range(256)))
            inner.commit("inner")
        t.remove("latest")
        t.create_symlink("latest", "src/feature.py")
        t.commit("merge feature")
    return head_or_fail(conn, "master")


EXPECTED = {
    "README": ("file", b"Hello from both"),
    "inner": ("file", bytes(range(256))),
    "latest": ("link", b"src/feature.py"),
    "run.sh": ("file", b"#!/bin/sh\necho hi\n"),
    "src/feature.py": ("file", b"x = 1\n"),
    "src/lib/util.py": ("file", b"def "),
}


def git_rev_parse(repo: Path, rev: str) -> str:
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", rev], capture_output=True, check=True
    )
    return out.stdout.decode().strip()


def test_same_script_same_data_on_every_backend(tmp_path: Path) -> None:
    results = {}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(tmp_path / "a") as memory_address,
        running_server(tmp_path / "b", git=str(tmp_path / "server.git")) as git_address,
    ):
        for name, address, repo in (
            ("9p-memory", memory_address, None),
            ("9p-git", git_address, tmp_path / "server.git"),
            ("git", str(tmp_path / "client.git"), tmp_path / "client.git"),
        ):
            with connect(address) as conn:
                head = example_script(conn)
                tree = head.tree()
                results[name] = (git_tree_hash(tree), dump(tree), len(head.parents))
                if repo is not None:
                    # The hash computed from what the API reads is Git's own.
                    assert git_rev_parse(repo, f"{head.id}^{{tree}}") == results[name][0]
    hashes = {r[0] for r in results.values()}
    assert len(hashes) == 1, results
    for _, files, parents in results.values():
        assert files == EXPECTED
        assert parents == 2


def test_git_backend_and_server_share_a_repository(tmp_path: Path) -> None:
    repo = tmp_path / "shared.git"
    with (
        running_server(tmp_path, git=str(repo)) as address,
        connect(address) as ninep,
        connect(repo) as git,
    ):
        commit_files(git.branch("master"), {"from-git": b"1"}, "via git backend")
        head = head_or_fail(ninep, "master")  # the server reads refs from disk
        assert head.message == "via git backend\n"
        assert head.tree().read_file("from-git") == b"1"

        commit_files(ninep.branch("master"), {"from-9p": b"2"}, "via 9p")
        deadline = time.monotonic() + 5
        while head_or_fail(git, "master").message != "via 9p\n":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert head_or_fail(git, "master").tree().read_dir("") == ["from-9p", "from-git"]
        assert head_or_fail(git, "master").parents[0].id == head.id

    fsck = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stderr.decode()
