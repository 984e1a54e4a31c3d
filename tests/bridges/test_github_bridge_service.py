"""The GitHub bridge as a service: it comes back when the database restarts
and stops cleanly on SIGTERM whatever it is doing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datakit.client import connect
from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    BRANCH,
    bridge_args,
    client_commit,
    github_bridge,
    wait_file,
)
from tests.operations.procs import wait_for_port
from tests.ports import free_port


@contextmanager
def server_on(port: int, repo: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "datakit", "serve", "--listen-9p", f"tcp://127.0.0.1:{port}",
         "--git", str(repo)],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_bridge_reconnects_after_the_database_restarts(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    repo = tmp_path / "db.git"
    with server_on(port, repo):
        bridge_cm = github_bridge(*bridge_args(address, fake.base_url, "--poll-interval", "0.5"))
        bridge = bridge_cm.__enter__()
        try:
            with connect(address, timeout=30) as conn:
                wait_file(conn.branch(BRANCH), "u/r/ref/heads/master/head", f"{c1}\n".encode())
        except BaseException:
            bridge_cm.__exit__(None, None, None)
            raise
    try:
        bridge.wait_log("lost the database")
        c2 = fake.push("u/r", "master")
        with server_on(port, repo), connect(address, timeout=30) as conn:
            branch = conn.branch(BRANCH)
            bridge.wait_log("reconnected")
            wait_file(branch, "u/r/ref/heads/master/head", f"{c2}\n".encode())
            client_commit(branch, {f"u/r/commit/{c2}/status/ci/datakit/state": b"success\n"})
            fake.wait_until(lambda: bool(fake.requests("POST", "/repos/u/r/statuses/*")))
    finally:
        bridge_cm.__exit__(None, None, None)  # SIGTERM: exit status 0, no traceback


def test_sigterm_while_the_database_is_away(fake_github: FakeGitHub, tmp_path: Path) -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    with server_on(port, tmp_path / "db.git"), \
            github_bridge(*bridge_args(address, fake_github.base_url)) as bridge:
        bridge.wait_log("step done")
        # the server goes away; the bridge waits for it until told to stop
    assert bridge.proc.returncode == 0


def test_sigterm_at_any_moment_of_start_up_exits_0(fake_github: FakeGitHub) -> None:
    """Stopped while starting (models being built, hooks being registered,
    the first import running): always a clean exit."""
    from tests.bridges.ghbridge import datakit_server

    with datakit_server() as address:
        for delay in (0.0, 0.5, 1.5):
            hook = f"http://127.0.0.1:{free_port()}/hook"
            with github_bridge(*bridge_args(address, fake_github.base_url, "--webhook", hook)) \
                    as bridge:
                bridge.wait_log("starting: database")
                time.sleep(delay)
            assert bridge.proc.returncode == 0


def test_another_metadata_branch(fake_github: FakeGitHub) -> None:
    """-b: the whole layout goes to that branch; github-metadata is left alone."""
    from tests.bridges.ghbridge import datakit_server

    c1 = fake_github.push("u/r", "master")
    with datakit_server() as address, connect(address, timeout=30) as conn:
        with github_bridge(*bridge_args(address, fake_github.base_url, "-b", "meta2")):
            wait_file(conn.branch("meta2"), "u/r/ref/heads/master/head", f"{c1}\n".encode())
        assert conn.branch(BRANCH).head() is None
