"""One run: one job on one commit, from the cache lookup to the stored result.

A :class:`Run` is shared by every target whose head is its commit (two
branches at the same commit test it once). Its state moves
``None`` (looking up the result branch) -> ``WAITING`` (for the jobs it
needs) -> ``QUEUED`` (for a pool slot) -> ``RUNNING`` -> ``SUCCESS`` or
``FAILURE``; each move is reported to the engine, which writes statuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from datakit.ci.livelog import LiveLog
from datakit.ci.model import JobSpec, JobState, JobView, ProjectSpec, TargetId


@dataclass(eq=False)
class Run:
    branch: str
    project: ProjectSpec
    job: JobSpec
    sha: str
    targets: set[TargetId] = field(default_factory=set)
    state: JobState | None = None
    description: str = ""
    started: float | None = None
    finished: float | None = None
    log: LiveLog | None = None
    saved: str | None = None  # the result branch commit holding the log
    elapsed: float | None = None  # the stored result's duration
    known: trio.Event = field(default_factory=trio.Event)  # state is not None
    done: trio.Event = field(default_factory=trio.Event)  # state is finished
    scope: trio.CancelScope | None = None
    cancel_reason: str | None = None
    keep_cancelled: bool = False  # store the cancellation (a user asked)
    generation: int = 0
    on_change: Callable[[Run], None] | None = None

    @property
    def title(self) -> str:
        return f"{self.job.name} on {self.sha[:12]}"

    def set(self, state: JobState, description: str) -> None:
        if (state, description) == (self.state, self.description):
            return
        self.state = state
        self.description = description
        self.known.set()
        if state is JobState.RUNNING and self.started is None:
            self.started = time.time()
        if state.finished:
            self.finished = self.finished or time.time()
            self.done.set()
        if self.on_change is not None:
            self.on_change(self)

    def restart(self) -> None:
        """Forget the outcome: the run will be looked up and run again."""
        self.generation += 1
        self.state = None
        self.description = ""
        self.started = self.finished = None
        self.saved = None
        self.elapsed = None
        self.log = None
        self.cancel_reason = None
        self.keep_cancelled = False
        self.known = trio.Event()
        self.done = trio.Event()

    def cancel(self, reason: str, *, keep: bool = False) -> bool:
        """Stop the run if it has not finished; ``keep`` stores the
        cancellation as its result (so it is not simply run again)."""
        if self.state is not None and self.state.finished:
            return False
        self.cancel_reason = reason
        self.keep_cancelled = keep
        if self.scope is not None:
            self.scope.cancel()
        return True

    def view(self) -> JobView:
        live = self.log is not None and not self.log.closed
        return JobView(
            name=self.job.name,
            state=self.state or JobState.QUEUED,
            description=self.description or "Looking up earlier results",
            branch=self.branch,
            saved=self.saved,
            live=live,
            started=self.started,
            finished=self.finished,
            elapsed=self.elapsed,
        )
