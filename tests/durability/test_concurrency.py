"""Many connections committing to the same branch at once lose no update."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from datakit.client.ninep_client import Client
from tests.durability.background import Background
from tests.serverthread import running_server

WRITERS = 8
COMMITS = 15


def writer(address: str, w: int, errors: list[BaseException]) -> None:
    try:
        with Client.connect(address, timeout=60) as c:
            c.mkdir("branch/master")
            for i in range(COMMITS):
                t = f"branch/master/transactions/w{w}-{i}"
                c.mkdir(t)
                c.create(f"{t}/rw/w{w}-{i}", f"{w}/{i}".encode())
                c.create(f"{t}/rw/last-{w}", str(i).encode())
                c.write(f"{t}/ctl", b"commit")
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


@pytest.mark.parametrize("store", ["memory", "git"])
def test_concurrent_commits_lose_nothing(tmp_path: Path, store: str) -> None:
    repo = tmp_path / "db"
    config = {"git": str(repo)} if store == "git" else {}
    with running_server(tmp_path, **config) as address:
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=writer, args=(address, w, errors)) for w in range(WRITERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        with Client.connect(address, timeout=30) as c:
            names = set(c.ls("branch/master/ro"))
            for w in range(WRITERS):
                assert c.read(f"branch/master/ro/last-{w}") == str(COMMITS - 1).encode()
    expected = {f"w{w}-{i}" for w in range(WRITERS) for i in range(COMMITS)}
    assert expected <= names
    if store == "git":
        subprocess.run(
            ["git", "--git-dir", str(repo), "fsck", "--strict"], check=True, capture_output=True
        )
        count = subprocess.run(
            ["git", "--git-dir", str(repo), "rev-list", "--count", "--no-merges", "master"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert int(count) == WRITERS * COMMITS


def test_a_commit_waiting_for_the_disk_does_not_stall_other_connections(tmp_path: Path) -> None:
    """A commit whose ref is locked by another process (as `git` holds
    `refs/heads/master.lock` while it updates master) waits for the lock; the
    other connections are served meanwhile, and the commit lands once the
    lock is released."""
    repo = tmp_path / "db"
    with running_server(tmp_path, git=str(repo)) as address:
        with Client.connect(address, timeout=30) as a, Client.connect(address, timeout=30) as b:
            a.mkdir("branch/master")
            b.mkdir("branch/master")  # branches made by mkdir are per connection
            a.mkdir("branch/master/transactions/t")
            a.create("branch/master/transactions/t/rw/f", b"data")
            lock = repo / "refs" / "heads" / "master.lock"
            lock.write_bytes(b"")  # fresh: a live competitor, not a stale lock
            committer = Background(lambda: a.write("branch/master/transactions/t/ctl", b"commit"))
            committer.done.wait(0.5)  # give the commit time to reach the lock
            assert not committer.done.is_set(), "the commit did not wait for the ref lock"
            os.utime(lock)  # still fresh: a lock older than 5 s counts as stale
            # Served while the commit waits (before, the event loop slept in it
            # until the lock went stale, so this answer came only after that).
            assert b.read("branch/master/head") == b"\n"
            assert b.ls("branch") == ["master"]
            assert lock.exists() and not committer.done.is_set()
            lock.unlink()
            committer.join(30)
            head = b.read("branch/master/head").strip().decode()
            assert b.read("branch/master/ro/f") == b"data"
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "master"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert out == head
