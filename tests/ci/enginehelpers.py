"""Helpers of the in-process engine regression tests
(tests/ci/test_engine_regressions.py).

A real `datakit serve` (memory) child process, real git source
repositories, ``github-metadata`` written directly the way the local bridge
writes it, and the :class:`~datakit.ci.engine.Engine` driven in the test's
own trio run: a race can then be landed deterministically by holding one
store call (a wrapper around a ``datakit.ci.storage`` function) until the
test has done its move, instead of hoping for the timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import trio

from datakit.bridges.service import Store, parse_store_address
from datakit.ci.config import load_config
from datakit.ci.engine import Engine
from datakit.client import Connection, connect
from datakit.github import tree as gh
from datakit.github.model import PR, PRState, Ref, RefId, Repo, Status, StatusId
from tests.ci.cihelpers import toml_config, with_marker
from tests.gitrepo import git
from tests.operations.procs import datakit_process

REPO = Repo("me", "p")
META = "github-metadata"
WEB_UI = "http://ci.example/"
TIMEOUT = 30.0  # generous: the machine is shared; nothing asserts speed
T = TypeVar("T")


@contextmanager
def server_process(port: int = 0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A `datakit serve` (memory store): its client address and process.
    ``port``: a fixed one (an in-memory database restarted where the CI
    expects it)."""
    args = ("--listen-9p", f"tcp://127.0.0.1:{port}") if port else ()
    with datakit_process(*args) as (p9, _metrics, proc):
        yield f"tcp://127.0.0.1:{p9}", proc


@contextmanager
def server() -> Iterator[str]:
    with server_process() as (address, _proc):
        yield address


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def commit(repo: Path, message: str) -> str:
    """A new commit on the checked-out branch of ``repo``; its SHA."""
    (repo / "README").write_text(message + "\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


class Meta:
    """Writes ``github-metadata`` the way the local bridge does, and reads
    the CI's statuses back."""

    def __init__(self, address: str) -> None:
        self.conn: Connection = connect(address, timeout=30)
        self.branch = self.conn.branch(META)

    def set_ref(self, name: str, sha: str) -> None:
        with self.branch.transaction() as tx:
            gh.write_monitor(tx, REPO)
            gh.write_ref(tx, Ref(REPO, tuple(name.split("/")), sha))
            tx.commit(f"ref {name} -> {sha}")

    def rename_ref(self, old: str, new: str, sha: str) -> None:
        """`git branch -m old new`: one commit removes one, adds the other."""
        with self.branch.transaction() as tx:
            gh.remove_element(tx, RefId(REPO, tuple(old.split("/"))))
            gh.write_ref(tx, Ref(REPO, tuple(new.split("/")), sha))
            tx.commit(f"ref {old} renamed {new}")

    def set_pr(self, number: int, sha: str) -> None:
        with self.branch.transaction() as tx:
            gh.write_monitor(tx, REPO)
            gh.write_pr(tx, PR(REPO, number, sha, PRState.OPEN, f"PR {number}"))
            tx.commit(f"pr {number} -> {sha}")

    def write_status(self, status: Status) -> None:
        with self.branch.transaction() as tx:
            gh.write_status(tx, status)
            tx.commit("status by someone")

    def status(self, sha: str, job: str) -> Status | None:
        head = self.branch.head()
        if head is None:
            return None
        return gh.read_status(head.tree(), StatusId(REPO, sha, ("ci", "datakit", job)))

    def close(self) -> None:
        with suppress(Exception):
            self.conn.close()


def write_config(tmp: Path, source: Path, jobs: list[dict[str, Any]]) -> Path:
    path = tmp / "ci.toml"
    path.write_text(toml_config([{"repo": str(REPO), "source": str(source), "job": jobs}]))
    return path


def make_engine(config: Path, address: str, workdir: Path, pool: int = 2) -> Engine:
    store = Store(parse_store_address(address), initial_delay=0.05, max_delay=0.5)
    store.connect_now()
    return Engine(load_config(config), store, web_ui=WEB_UI, workdir=workdir, pool_size=pool)


@asynccontextmanager
async def running(engine: Engine) -> AsyncIterator[Engine]:
    """The engine's main loop in the background, cancelled at the end."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.run)
        try:
            yield engine
        finally:
            nursery.cancel_scope.cancel()
    engine.store.close()


async def wait_for(pred: Callable[[], T | None], what: str, timeout: float = TIMEOUT) -> T:
    """Poll a blocking predicate (it may use the client) in a thread."""
    with trio.move_on_after(timeout):
        while True:
            value = await trio.to_thread.run_sync(pred)
            if value:
                return value
            await trio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


async def wait_engine(pred: Callable[[], T | None], what: str, timeout: float = TIMEOUT) -> T:
    """Poll a predicate on the engine's state (in the trio thread)."""
    with trio.move_on_after(timeout):
        while True:
            value = pred()
            if value:
                return value
            await trio.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout} s")


def kill_marked(mark: str) -> None:
    for proc in with_marker(mark):
        with suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)


class Gate:
    """Holds calls of a blocking function until the test opens the gate: a
    race landed on purpose. The engine runs ``datakit.ci.storage``
    functions in worker threads (through ``Store.run``) and removes a
    job's checkout in one (``datakit.ci.mirror._remove_tree``, shielded:
    the cancelled attempt is still unwinding meanwhile). Only calls for
    which ``select(*args, **kwargs)`` is true are held, and only while
    ``armed``; the real function runs once the gate opens."""

    def __init__(self, real: Callable[..., Any], select: Callable[..., bool]) -> None:
        self.real = real
        self.select = select
        self.armed = True
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed and self.select(*args, **kwargs):
            self.entered.set()
            self.opened.wait(TIMEOUT)
        return self.real(*args, **kwargs)

    async def wait_entered(self, what: str) -> None:
        await wait_for(self.entered.is_set, what)

    def open(self) -> None:
        self.armed = False
        self.opened.set()
