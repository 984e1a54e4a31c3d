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
class Attempt:
    """One go at a run. A rebuild, or a target coming back to a commit whose
    run is being cancelled, starts a new attempt; the old one is cancelled
    and whatever it still does is ignored (:meth:`Run.set` checks whose
    turn it is). The scope exists before the attempt's task starts, so a
    cancellation that comes first is not lost."""

    skip_cache: bool = False  # a rebuild: do not reuse the stored result
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


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
    attempt: Attempt = field(default_factory=Attempt)
    cancel_reason: str | None = None
    keep_cancelled: bool = False  # store the cancellation (a user asked)
    on_change: Callable[[Run], None] | None = None
    # A status of the current attempt before it ended (queued, running...)
    # has been written: the engine waits for it before the final one.
    published: bool = False
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def title(self) -> str:
        return f"{self.job.name} on {self.sha[:12]}"

    @property
    def finished_state(self) -> bool:
        return self.state is not None and self.state.finished

    def set(self, attempt: Attempt, state: JobState, description: str) -> None:
        """Move the run on, if ``attempt`` is still its current one."""
        if attempt is not self.attempt:
            return
        if (state, description) == (self.state, self.description):
            return
        self.state = state
        self.description = description
        if state is JobState.RUNNING and self.started is None:
            self.started = time.time()
        if state.finished:
            self.finished = self.finished or time.time()
        self._notify()

    async def wait_change(self) -> None:
        """Until the next change of state (a restart included)."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        if self.on_change is not None:
            self.on_change(self)

    def restart(self, *, skip_cache: bool = False) -> Attempt:
        """Cancel the current attempt and forget its outcome: the next
        attempt looks the result up (unless ``skip_cache``) and runs again."""
        self.attempt.scope.cancel()
        self.attempt = Attempt(skip_cache=skip_cache)
        self.state = None
        self.description = ""
        self.started = self.finished = None
        self.saved = None
        self.elapsed = None
        self.log = None
        self.cancel_reason = None
        self.keep_cancelled = False
        self.published = False
        self._notify()
        return self.attempt

    def cancel(self, reason: str, *, keep: bool = False) -> bool:
        """Cancel the current attempt unless it has finished (then False);
        ``keep`` stores the cancellation as its result (so it is not simply
        run again)."""
        if self.finished_state:
            return False
        self.cancel_reason = reason
        self.keep_cancelled = keep
        self.attempt.scope.cancel()
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
