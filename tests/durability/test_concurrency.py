"""Many connections committing to the same branch at once lose no update."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from datakit.client.ninep_client import Client
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
