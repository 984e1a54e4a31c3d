"""kill -9 at random moments loses no acknowledged commit, and git fsck stays clean."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from datakit.client.ninep_client import Client, ConnectionClosed, RemoteError
from datakit.store._objects import PACK_MIN_OBJECTS
from tests.operations.procs import wait_for_port
from tests.ports import free_port


def start(repo: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datakit",
            "serve",
            "-q",
            "--git",
            str(repo),
            "--listen-9p",
            f"tcp://127.0.0.1:{port}",
        ]
    )
    wait_for_port(port, proc)
    return proc


BIG_EVERY = 10  # every tenth commit also adds a directory of BIG_FILES files
BIG_FILES = 2 * PACK_MIN_OBJECTS


def committer(port: int, start_at: int, acked: list[int], stop: threading.Event) -> None:
    """Commit file f<i> for i = start_at, ... until the connection dies."""
    try:
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=20) as c:
            c.mkdir("branch/master")
            i = start_at
            while not stop.is_set():
                t = f"branch/master/transactions/t{i}"
                c.mkdir(t)
                c.create(f"{t}/rw/f{i}", str(i).encode())
                if i % BIG_EVERY == 0:  # big enough to be written as a pack
                    c.mkdir(f"{t}/rw/b{i}")
                    for k in range(BIG_FILES):
                        c.create(f"{t}/rw/b{i}/{k}", f"{i}/{k}".encode())
                c.write(f"{t}/ctl", b"commit")
                acked.append(i)  # the server acknowledged this commit
                i += 1
    except (OSError, ConnectionClosed, RemoteError):
        pass  # the server was killed under us


def test_kill_9_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    repo = tmp_path / "db"
    rng = random.Random(1234)
    acked: list[int] = []
    next_i = 0
    for _round in range(6):
        port = free_port()
        proc = start(repo, port)
        stop = threading.Event()
        worker = threading.Thread(target=committer, args=(port, next_i, acked, stop))
        worker.start()
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        worker.join(30)
        next_i = (acked[-1] + 1) if acked else next_i
        next_i += 1000  # never reuse a number a lost, unacknowledged commit may have used

    assert len(acked) > 20, "the committer made too little progress to test anything"
    tree = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "--name-only", "master"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    missing = [i for i in acked if f"f{i}" not in tree]
    assert not missing, f"acknowledged commits lost: {missing[:10]}"
    big = [i for i in acked if i % BIG_EVERY == 0]
    assert big, "no big (packed) commit was acknowledged"
    for i in big:
        names = subprocess.run(
            ["git", "--git-dir", str(repo), "ls-tree", "--name-only", f"master:b{i}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert len(names) == BIG_FILES, f"commit {i}: {len(names)} of {BIG_FILES} files"
    assert list((repo / "objects" / "pack").glob("*.pack")), "no commit was written as a pack"
    subprocess.run(
        ["git", "--git-dir", str(repo), "fsck", "--strict"], check=True, capture_output=True
    )
