"""`store.ls_remote` (a remote's branches, bounded as a fetch) and one
`Replica` in-process, against a real `git daemon`."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from datakit import metrics
from datakit import store as st
from datakit.fs.writes import StoreWriter
from datakit.replica import Replica
from tests.gitdaemon import GitRemote, serve_repository
from tests.gitrepo import blob, commit_tree, git, literal_tree


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[GitRemote]:
    repo = tmp_path / "plain"
    repo.mkdir()
    with serve_repository(repo) as served:
        git(repo, "branch", "stable")
        git(repo, "branch", "wip+1")
        git(repo, "tag", "-a", "-m", "v1", "v1")
        yield served


def test_ls_remote_lists_the_branches(remote: GitRemote) -> None:
    found = st.ls_remote(remote.url)
    assert found.heads == {"master": remote.master, "stable": remote.master}
    assert found.ignored == ["wip+1"]  # not a DataKit name; tags are no branches


def test_ls_remote_follows_the_operator_policy(remote: GitRemote) -> None:
    with pytest.raises(st.FetchError, match="git:// remotes are not allowed"):
        st.ls_remote(remote.url, policy=st.RemotePolicy(schemes=frozenset({"https"})))
    with pytest.raises(st.FetchError, match="not allowed"):
        st.check_remote("/etc", st.RemotePolicy())


@contextmanager
def answering(reply: bytes) -> Iterator[str]:
    """A TCP server answering every connection with `reply`; its git:// URL."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)  # the request, then the answer, then
                    conn.sendall(reply)
                    while conn.recv(65536):  # what the client says until it leaves
                        pass
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"git://127.0.0.1:{server.getsockname()[1]}/"
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        server.close()
        thread.join(5)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (b"garbage that is not the git protocol\n", "bad answer from the remote"),
        # A well-formed advertisement naming a branch by something else
        # than an object id.
        (b"003f" + b"z" * 40 + b" refs/heads/master\n" + b"0000", "malformed object id"),
    ],
)
def test_garbage_from_the_remote_is_an_error(reply: bytes, why: str) -> None:
    with answering(reply) as url, pytest.raises(st.FetchError) as info:
        st.ls_remote(url)
    assert str(info.value).startswith(f"error: cannot list the branches of {url}")
    assert why in str(info.value)


def test_a_closed_port_says_so(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(st.FetchError, match="connection refused"):
        st.ls_remote(f"git://127.0.0.1:{port}/")


async def test_a_replica_polls_fetches_and_reports_an_outage_once(
    remote: GitRemote, caplog: pytest.LogCaptureFixture
) -> None:
    store = st.Store.memory()
    replica = Replica(store, StoreWriter(store), remote.url, policy=st.RemotePolicy())
    assert await replica.poll()
    assert store.heads() == {"master": remote.master, "stable": remote.master}
    assert replica.lag() < 60

    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    dead = Replica(store, StoreWriter(store), f"git://127.0.0.1:{port}/", policy=st.RemotePolicy())
    errors = metrics.REPLICA_ERRORS._value.get()
    with caplog.at_level(logging.WARNING, logger="datakit.replica"):
        for _ in range(3):
            assert not await dead.poll()
    assert metrics.REPLICA_ERRORS._value.get() == errors + 3
    assert sum("connection refused" in r.getMessage() for r in caplog.records) == 1
    assert store.heads() == {"master": remote.master, "stable": remote.master}  # kept


async def test_a_refused_branch_backs_off_alone(
    remote: GitRemote, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "plain"
    # A branch whose tree git's fsck (and ours) refuses: a ".git" entry.
    bad_tree = literal_tree(repo, [(b"100644", b".git", blob(repo, b"x"))])
    commit_tree(repo, bad_tree, "bad", branch="bad")
    store = st.Store.memory()
    # A long interval: the back-off (twice it) cannot pass during the test.
    replica = Replica(store, StoreWriter(store), remote.url, policy=st.RemotePolicy(), interval=10)
    never = replica.synced_at
    errors = metrics.REPLICA_ERRORS._value.get()
    with caplog.at_level(logging.WARNING, logger="datakit.replica"):
        assert await replica.poll()  # the primary answers: no global back-off
        assert metrics.REPLICA_ERRORS._value.get() == errors + 1
        assert "bad" not in store.heads()
        assert store.heads()["master"] == remote.master  # the others are followed

        (repo / "foo").write_text("second\n")
        git(repo, "commit", "-q", "-am", "second")
        assert await replica.poll()
        assert store.heads()["master"] == git(repo, "rev-parse", "master")
        # The bad branch waits for its back-off: not fetched again yet.
        assert metrics.REPLICA_ERRORS._value.get() == errors + 1
    refused = [r.getMessage() for r in caplog.records if "branch bad" in r.getMessage()]
    assert len(refused) == 1 and "cannot fetch" in refused[0]
    assert replica.synced_at == never  # not in sync while a branch is missing


async def test_an_unexpected_error_is_logged_once_and_the_replica_goes_on(
    remote: GitRemote, caplog: pytest.LogCaptureFixture
) -> None:
    store = st.Store.memory()
    replica = Replica(
        store, StoreWriter(store), remote.url, policy=st.RemotePolicy(), interval=0.01
    )
    replica.max_backoff = 0.02
    calls = 0
    real_list = replica._list

    def broken_then_fine(guard: st.FetchGuard) -> tuple[st.RemoteHeads, dict[str, str]]:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise RuntimeError("a bug")
        return real_list(guard)

    replica._list = broken_then_fine  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="datakit.replica"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replica.run)
            with trio.fail_after(30):
                while store.heads().get("master") != remote.master:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert calls > 3
    assert [r.levelname for r in caplog.records if "a bug" in (r.exc_text or "")] == ["ERROR"]
