"""A stateful in-memory :class:`datakit.ci.model.CIView` for the web UI's
tests: the test sets targets, logs and history directly, writes to live
logs as a job would, and reads back which actions the UI asked for."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from datakit.ci.model import (
    CIConfig,
    HistoryEntry,
    JobSpec,
    JobState,
    JobView,
    ProjectSpec,
    Summary,
    TargetId,
    TargetView,
)
from datakit.github.model import PRId, RefId, Repo

REPO = Repo("me", "p")


def sha(n: int) -> str:
    """A made-up 40-hex commit id."""
    return hashlib.sha1(str(n).encode()).hexdigest()


class FakeLiveLog:
    """A live log the test writes to; ``chunks`` wakes on every write."""

    def __init__(self) -> None:
        self._data = bytearray()
        self.closed = False
        self._changed = trio.Event()

    @property
    def size(self) -> int:
        return len(self._data)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def write(self, data: bytes) -> None:
        self._data += data
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def snapshot(self) -> bytes:
        return bytes(self._data)

    async def chunks(self, start: int = 0) -> AsyncIterator[bytes]:
        pos = start
        while True:
            if pos < len(self._data):
                chunk = bytes(self._data[pos:])
                pos += len(chunk)
                yield chunk
                continue
            if self.closed:
                return
            await self._changed.wait()


@dataclass
class FakeView:
    """Targets by id; logs by branch; every action recorded in ``calls``."""

    config: CIConfig
    web_ui: str = "http://ci.example/"
    target_views: dict[TargetId, TargetView] = field(default_factory=dict)
    live_logs: dict[str, FakeLiveLog] = field(default_factory=dict)
    saved_logs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    histories: dict[TargetId, list[HistoryEntry]] = field(default_factory=dict)
    builds: dict[tuple[Repo, str], list[tuple[TargetId, str]]] = field(default_factory=dict)
    calls: list[tuple[str, object]] = field(default_factory=list)
    running: set[str] = field(default_factory=set)

    def put(self, target: TargetView) -> None:
        self.target_views[target.id] = target

    def update_job(self, ident: TargetId, name: str, **changes: Any) -> None:
        target = self.target_views[ident]
        jobs = tuple(replace(j, **changes) if j.name == name else j for j in target.jobs)
        self.target_views[ident] = replace(target, jobs=jobs)

    # --- CIView ---------------------------------------------------------------

    def targets(self, repo: Repo | None = None) -> list[TargetView]:
        return [t for t in self.target_views.values() if repo is None or t.repo == repo]

    def target(self, ident: TargetId) -> TargetView | None:
        return self.target_views.get(ident)

    def live_log(self, branch: str) -> FakeLiveLog | None:
        return self.live_logs.get(branch)

    async def saved_log(self, branch: str, commit: str) -> bytes | None:
        await trio.lowlevel.checkpoint()
        return self.saved_logs.get((branch, commit))

    async def history(self, ident: TargetId, limit: int = 20) -> list[HistoryEntry]:
        await trio.lowlevel.checkpoint()
        return self.histories.get(ident, [])[:limit]

    async def builds_of_commit(self, repo: Repo, sha: str) -> list[tuple[TargetId, str]]:
        await trio.lowlevel.checkpoint()
        return self.builds.get((repo, sha), [])

    async def rebuild(self, branch: str) -> bool:
        await trio.lowlevel.checkpoint()
        self.calls.append(("rebuild", branch))
        return any(j.branch == branch for t in self.target_views.values() for j in t.jobs)

    async def rebuild_failed(self, ident: TargetId) -> int:
        await trio.lowlevel.checkpoint()
        self.calls.append(("rebuild_failed", ident))
        target = self.target_views.get(ident)
        return sum(1 for j in target.jobs if j.state is JobState.FAILURE) if target else 0

    async def cancel(self, branch: str) -> bool:
        await trio.lowlevel.checkpoint()
        self.calls.append(("cancel", branch))
        return branch in self.running


MASTER = RefId(REPO, ("heads", "master"))
DEV = RefId(REPO, ("heads", "dev"))
PR5 = PRId(REPO, 5)


def result_branch(job: str, head: str) -> str:
    return f"shell-of-{job}-0123456789ab-on-{head}"


def example_view() -> FakeView:
    """``me/p`` with a green master (build, test), a red dev (test failed
    with a saved log) and PR #5 with a running job (live log) and a queued
    one. Dashboards: master and dev."""
    jobs = (JobSpec("build", ("make",)), JobSpec("test", "make test"))
    project = ProjectSpec(REPO, "/srv/p", jobs, dashboards=("master", "dev"))
    view = FakeView(CIConfig("ci.toml", (project,)))
    m, d, p = sha(1), sha(2), sha(3)
    T0 = time.time() - 600
    view.put(
        TargetView(
            MASTER,
            m,
            (
                JobView(
                    "build",
                    JobState.SUCCESS,
                    "build passed",
                    result_branch("build", m),
                    saved=sha(11),
                    started=T0,
                    finished=T0 + 72,
                ),
                JobView(
                    "test",
                    JobState.SUCCESS,
                    "test passed",
                    result_branch("test", m),
                    saved=sha(12),
                    started=T0,
                    finished=T0 + 5,
                ),
            ),
            history=sha(21),
        )
    )
    view.put(
        TargetView(
            DEV,
            d,
            (
                JobView(
                    "build",
                    JobState.SUCCESS,
                    "build passed",
                    result_branch("build", d),
                    saved=sha(13),
                    started=T0,
                    finished=T0 + 1,
                ),
                JobView(
                    "test",
                    JobState.FAILURE,
                    "test failed: exit 3",
                    result_branch("test", d),
                    saved=sha(14),
                    started=T0,
                    finished=T0 + 3.5,
                ),
            ),
        )
    )
    view.put(
        TargetView(
            PR5,
            p,
            (
                JobView(
                    "build",
                    JobState.RUNNING,
                    "Running build",
                    result_branch("build", p),
                    live=True,
                    started=T0,
                ),
                JobView("test", JobState.WAITING, "waiting for build", result_branch("test", p)),
            ),
            title="Make <it> faster & better",
        )
    )
    view.saved_logs[(result_branch("build", m), sha(11))] = b"compiling\n\x1b[32mok\x1b[0m\n"
    view.saved_logs[(result_branch("test", m), sha(12))] = b"all tests passed\n"
    view.saved_logs[(result_branch("build", d), sha(13))] = b"built\n"
    view.saved_logs[(result_branch("test", d), sha(14))] = (
        b"running tests\n\x1b[31mFAIL\x1b[0m test_x <script>alert(1)</script>\nboom\n"
    )
    live = FakeLiveLog()
    live.write(b"starting build\n")
    view.live_logs[result_branch("build", p)] = live
    view.running.add(result_branch("build", p))
    view.histories[MASTER] = [
        HistoryEntry(
            sha(21),
            m,
            (("build", "success", "build passed"), ("test", "success", "test passed")),
            summary=Summary.SUCCESS,
        ),
        HistoryEntry(
            sha(20),
            sha(9),
            (("build", "failure", "build failed: exit 1"),),
            summary=Summary.FAILURE,
        ),
    ]
    view.builds[(REPO, sha(9))] = [(MASTER, sha(20))]
    return view
