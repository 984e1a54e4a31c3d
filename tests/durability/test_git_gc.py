"""`git gc` on the repository of a running server: commits go on, nothing is lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

from datakit.client.ninep_client import Client
from tests.durability.background import Background
from tests.serverthread import running_server

# Enough commits for several `git gc` runs to overlap them: a gc that packs
# loose objects removes the emptied objects/xx/ directories, which a commit
# writing there at that moment must recreate (found by this test).
COMMITS = 150


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def test_git_gc_while_committing(tmp_path: Path) -> None:
    repo = tmp_path / "db.git"
    with running_server(tmp_path, git=str(repo)) as address:

        def commit_loop() -> None:
            with Client.connect(address, timeout=60) as c:
                c.mkdir("branch/master")
                for i in range(COMMITS):
                    t = f"branch/master/transactions/t{i}"
                    c.mkdir(t)
                    c.create(f"{t}/rw/f{i}", f"{i}\n".encode())
                    if i % 20 == 0:  # some commits big enough to be packs
                        c.mkdir(f"{t}/rw/d{i}")
                        for k in range(100):
                            c.create(f"{t}/rw/d{i}/{k}", f"{i}/{k}".encode())
                    c.write(f"{t}/ctl", b"commit")

        committer = Background(commit_loop)
        gcs = 0
        while not committer.done.is_set() or gcs == 0:
            git(repo, "gc", "-q")  # repack, pack refs, prune old unreachable objects
            gcs += 1
        committer.join(60)
        with Client.connect(address, timeout=30) as c:
            c.mkdir("branch/master")
            assert c.read("branch/master/ro/f0") == b"0\n"
            assert c.read("branch/master/ro/d40/99") == b"40/99"
            assert len(c.ls("branch/master/ro")) == COMMITS + len(range(0, COMMITS, 20))
            head = c.read("branch/master/head").strip().decode()
    assert git(repo, "rev-parse", "master").strip() == head
    assert git(repo, "rev-list", "--count", "master").strip() == str(COMMITS)
    git(repo, "fsck", "--strict")
    assert list((repo / "objects" / "pack").glob("*.pack"))
