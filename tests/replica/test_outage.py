"""The primary goes away and comes back: the replica says so once, backs
off, catches up, and its lag rises and falls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from subprocess import Popen

from tests.replica.helpers import (
    Ports,
    client,
    commit,
    heads,
    log_text,
    metric,
    primary,
    replica,
    wait_for,
)

LAG = "datakit_replica_lag_seconds"
ERRORS = "datakit_replica_errors_total"


@contextmanager
def primary_on(git_port: int, store: Path) -> Iterator[tuple[Ports, Popen[bytes]]]:
    """The primary again, on the Git port the replica follows (retried while
    the port is still held by the connections of the one before)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            started = primary("--git", str(store), git_port=git_port)
            ports, proc = started.__enter__()
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        try:
            yield ports, proc
        finally:
            started.__exit__(None, None, None)
        return


def test_the_replica_catches_up_when_the_primary_comes_back(tmp_path: Path) -> None:
    store = tmp_path / "primary.git"
    log = tmp_path / "replica.log"
    with ExitStack() as stack:
        out = stack.enter_context(open(log, "wb"))
        with primary("--git", str(store)) as (p, _):
            git_port = p["git"]
            with client(p["9p"]) as writer:
                before = commit(writer, "master", "a", b"before")
            # The replica outlives this primary.
            r, rproc = stack.enter_context(replica(f"git://127.0.0.1:{git_port}/", log=out))
            wait_for(lambda: heads(r["9p"]).get("master") == before, "the replica")
            wait_for(lambda: metric(r["metrics"], LAG) < 2, "a small lag")

        # The primary is gone: the lag grows, errors are counted, but the
        # outage is logged once, not at every poll.
        wait_for(lambda: metric(r["metrics"], ERRORS) >= 3, "three failed polls")
        wait_for(lambda: metric(r["metrics"], LAG) > 2, "the lag to grow")
        assert log_text(log).count("cannot list the branches of") == 1
        assert heads(r["9p"]) == {"master": before}  # still served meanwhile

        with primary_on(git_port, store) as (p2, _):
            with client(p2["9p"]) as writer:
                assert writer.branch("master").head().id == before  # type: ignore[union-attr]
                after = commit(writer, "master", "b", b"after")
            wait_for(lambda: heads(r["9p"]).get("master") == after, "the replica to catch up")
            wait_for(lambda: metric(r["metrics"], LAG) < 2, "the lag to drop")
            wait_for(lambda: " again after " in log_text(log), "the recovery log")
            assert log_text(log).count("cannot list the branches of") == 1
        assert rproc.poll() is None
