"""The local bridge as a service: it stops cleanly on SIGTERM/SIGINT, comes
back after the database restarts, works with no server (git://), and
serves Prometheus metrics."""

from __future__ import annotations

import re
import shutil
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from datakit.client import connect
from tests.bridges.localbridge import (
    Bridge,
    bridge,
    commit,
    head_of,
    make_repo,
    unix_server,
    wait_for_tree,
)
from tests.gitrepo import git

MASTER = "me/p/ref/heads/master/head"


def wait_for_log(b: Bridge, pattern: str, timeout: float = 10) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, b.log())
        if match:
            return match
        assert b.proc.poll() is None, b.log()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never logged: {b.log()}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_on_signals(tmp_path: Path, signum: int) -> None:
    repo = make_repo(tmp_path / "p")
    sock = tmp_path / "dk.sock"
    with unix_server(sock, log=tmp_path / "server.log"):
        with connect(f"unix://{sock}") as client:
            b = Bridge(["--metadata-store", f"unix://{sock}", f"me/p:{repo}"], tmp_path / "log")
            wait_for_tree(client, lambda _c, t: t.exists(MASTER))
            b.proc.send_signal(signum)
            assert b.proc.wait(10) == 0
            b.stop()
    assert "Traceback" not in b.log(), b.log()


def test_stops_cleanly_while_the_database_is_down(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    sock = tmp_path / "dk.sock"
    with unix_server(sock, log=tmp_path / "server.log") as server:
        with connect(f"unix://{sock}") as client:
            b = Bridge(["--metadata-store", f"file://{sock}", f"me/p:{repo}"], tmp_path / "log")
            wait_for_tree(client, lambda _c, t: t.exists(MASTER))
        server.terminate()
        server.wait(10)
        commit(repo, "while down")  # the bridge tries, fails, backs off
        wait_for_log(b, "lost the metadata store")
        assert b.stop(timeout=10) == 0
    assert "Traceback" not in b.log(), b.log()


@pytest.mark.parametrize("store", ["git", "memory"])
def test_reconnects_after_the_database_restarts(tmp_path: Path, store: str) -> None:
    """Stop the server, commit meanwhile, start it again on the same socket
    (and, with --git, the same repository): the bridge reconnects, says so
    once, and publishes the new head; a memory store, which lost
    everything, gets every branch again."""
    repo = make_repo(tmp_path / "p")
    sock = tmp_path / "dk.sock"
    args = ["--git", str(tmp_path / "db.git")] if store == "git" else []
    with unix_server(sock, *args, log=tmp_path / "server.log") as server:
        b = Bridge(["--metadata-store", f"unix://{sock}", "-v", f"me/p:{repo}"], tmp_path / "log")
        with connect(f"unix://{sock}") as client:
            wait_for_tree(client, lambda _c, t: t.exists(MASTER))
        server.terminate()
        server.wait(10)
    try:
        new = commit(repo, "while the database is down")
        wait_for_log(b, "lost the metadata store")
        time.sleep(1)  # a few failed attempts, with back-off
        with unix_server(sock, *args, log=tmp_path / "server.log"):
            with connect(f"unix://{sock}") as client:
                head = wait_for_tree(
                    client,
                    lambda _c, t: (
                        head_of(t, MASTER) == f"{new}\n"
                        and t.exists("me/p/ref/heads/feature/x/head")
                    ),
                    timeout=30,
                )
                if store == "git":
                    assert head.message.startswith("Updating existing branch to")
                # and it keeps following
                newer = commit(repo, "after the restart")
                wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{newer}\n")
            assert b.stop() == 0  # before the server goes: that would be a second outage
    finally:
        b.stop()
    log = b.log()
    assert log.count("lost the metadata store") == 1, log
    assert log.count("reconnected to the metadata store") == 1, log
    assert "Traceback" not in log, log


def test_git_direct_mode(tmp_path: Path) -> None:
    """--metadata-store git://PATH: no server; the metadata branch is kept
    in that repository, where `git` sees it."""
    from tests.gitrepo import git

    repo = make_repo(tmp_path / "p")
    meta = tmp_path / "meta.git"
    with bridge("--metadata-store", f"git://{meta}", f"me/p:{repo}", log=tmp_path / "log"):
        with connect(meta) as client:
            wait_for_tree(client, lambda _c, t: t.exists(MASTER))
    shown = git(meta, "show", f"github-metadata:{MASTER}")
    assert shown == git(repo, "rev-parse", "master")


def test_prometheus_metrics(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    sock = tmp_path / "dk.sock"
    with unix_server(sock, log=tmp_path / "server.log"):
        with bridge(
            "--metadata-store",
            f"unix://{sock}",
            "--listen-prometheus",
            "127.0.0.1:0",
            f"me/p:{repo}",
            log=tmp_path / "log",
        ) as b:
            port = int(wait_for_log(b, r"metrics at http://127\.0\.0\.1:(\d+)/metrics").group(1))
            with connect(f"unix://{sock}") as client:
                wait_for_tree(client, lambda _c, t: t.exists(MASTER))
            deadline = time.monotonic() + 10
            while True:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
                    text = r.read().decode()
                if 'datakit_bridge_local_syncs_total{outcome="committed"} 1.0' in text:
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.1)
            assert 'datakit_bridge_local_refs{repo="me/p"} 2.0' in text
            assert "datakit_app_store_connected 1.0" in text
            assert "datakit_9p_requests_total" not in text  # the server's, not ours


def test_a_repository_that_goes_away_and_comes_back(tmp_path: Path) -> None:
    """At run time an unreadable repository is a log line, its refs in the
    branch are kept (not "deleted"), and it is followed again once back."""
    repo = make_repo(tmp_path / "p")
    away = tmp_path / "away"
    sock = tmp_path / "dk.sock"
    with unix_server(sock, log=tmp_path / "server.log"), connect(f"unix://{sock}") as client:
        with bridge(
            "--metadata-store",
            f"unix://{sock}",
            "--poll-interval",
            "0.2",
            f"me/p:{repo}",
            log=tmp_path / "log",
        ) as b:
            first = wait_for_tree(client, lambda _c, t: t.exists(MASTER))
            repo.rename(away)
            wait_for_log(b, "cannot read the refs of")
            assert client.branch("github-metadata").head() == first
            away.rename(repo)
            new = commit(repo, "back")
            wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{new}\n")
            wait_for_log(b, "reading the refs of .* again")
            assert b.stop() == 0
        assert b.log().count("cannot read the refs of") == 1, b.log()


def test_a_repository_replaced_while_watched_with_inotify(tmp_path: Path) -> None:
    """rm -rf and a fresh clone moved into place (a deploy script): every
    inotify watch is gone with the old directory, and the bridge must look
    again within seconds, not at the 60 s safety tick."""
    repo = make_repo(tmp_path / "p")
    db = tmp_path / "db"
    master = "me/p/ref/heads/master/head"
    with connect(str(db)) as conn:
        with bridge("--metadata-store", f"git://{db}", f"me/p:{repo}", log=tmp_path / "log"):
            wait_for_tree(conn, lambda _c, t: t.exists(master))
            git(None, "clone", "-q", str(repo), str(tmp_path / "new"))
            new = commit(tmp_path / "new", "after re-clone")
            shutil.rmtree(repo)
            time.sleep(1)  # the repository is missing for a moment
            (tmp_path / "new").rename(repo)
            wait_for_tree(conn, lambda _c, t: head_of(t, master) == f"{new}\n", timeout=10)
            newer = commit(repo, "one more")
            wait_for_tree(conn, lambda _c, t: head_of(t, master) == f"{newer}\n", timeout=10)
