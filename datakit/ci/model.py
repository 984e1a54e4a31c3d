"""The CI's vocabulary, shared by the configuration, the engine, the runner,
the storage and the web UI: pure values, no I/O.

A *target* is what GitHub calls a PR or a ref of a repository (the ids of
:mod:`datakit.github.model`: ``PRId`` or ``RefId``); its *head* is the
commit to test. A *job* is one ``[[project.job]]`` of the configuration; a
*run* is one job on one commit, identified by the job's definition hash and
the commit SHA, and stored on its own result branch (spec ci.md B.5).
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from datakit.github.model import PRId, RefId, Repo, StatusState

TargetId = PRId | RefId

# Status contexts are ci/datakit/<job> (spec A.3 step 3).
CONTEXT_PREFIX: tuple[str, ...] = ("ci", "datakit")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One ``[[project.job]]``. ``run`` is an argv (list) or a string for
    ``sh -c``; ``timeout`` in seconds; ``image`` runs it under podman
    (``network`` names podman's network, ``None`` for no network)."""

    name: str
    run: tuple[str, ...] | str
    timeout: float = 3600.0
    image: str | None = None
    network: str | None = None
    needs: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    @property
    def argv(self) -> list[str]:
        if isinstance(self.run, str):
            return ["sh", "-c", self.run]
        return list(self.run)

    @property
    def definition_hash(self) -> str:
        """12 hex digits over everything that changes what the job does, so
        editing a job's command re-runs it while renaming nothing else does
        not. ``needs`` is included: a job with other prerequisites is a
        different run."""
        canonical = json.dumps(
            {
                "name": self.name,
                "run": self.run if isinstance(self.run, str) else list(self.run),
                "timeout": self.timeout,
                "image": self.image,
                "network": self.network,
                "needs": list(self.needs),
                "env": dict(self.env),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def context(self) -> tuple[str, ...]:
        return (*CONTEXT_PREFIX, self.name)


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    """One ``[[project]]``: ``targets`` are globs over ``heads/…``/``tags/…``
    ref names plus the word ``prs`` (spec B.2)."""

    repo: Repo
    source: str
    jobs: tuple[JobSpec, ...]
    dashboards: tuple[str, ...] = ("master",)
    targets: tuple[str, ...] = ("heads/*", "prs")

    def job(self, name: str) -> JobSpec | None:
        return next((j for j in self.jobs if j.name == name), None)


@dataclass(frozen=True, slots=True)
class CIConfig:
    path: str
    projects: tuple[ProjectSpec, ...]

    def project(self, repo: Repo) -> ProjectSpec | None:
        return next((p for p in self.projects if p.repo == repo), None)


class JobState(enum.StrEnum):
    """Where one run is. The first three are ``pending`` on GitHub."""

    QUEUED = "queued"
    WAITING = "waiting"  # for a job it needs
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"

    @property
    def status(self) -> StatusState:
        if self is JobState.SUCCESS:
            return StatusState.SUCCESS
        if self is JobState.FAILURE:
            return StatusState.FAILURE
        return StatusState.PENDING

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCESS, JobState.FAILURE)


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run, as stored on its result branch (spec A.4, B.5):
    ``failure`` is the failure message (None: it passed)."""

    description: str
    failure: str | None
    exit_status: int | None
    duration: float
    log: bytes

    @property
    def state(self) -> JobState:
        return JobState.FAILURE if self.failure is not None else JobState.SUCCESS


class Summary(enum.StrEnum):
    """The overall state of a target (#345): failure if any job failed,
    else pending if any is not finished, else success."""

    SUCCESS = "success"
    PENDING = "pending"
    FAILURE = "failure"

    @classmethod
    def of(cls, states: Mapping[str, JobState]) -> Summary:
        values = set(states.values())
        if JobState.FAILURE in values:
            return cls.FAILURE
        if values == {JobState.SUCCESS}:
            return cls.SUCCESS
        return cls.PENDING


# --- what the web UI reads (implemented by the engine) -----------------------


@dataclass(frozen=True, slots=True)
class JobView:
    """One job of one target as the UI shows it. ``branch`` is the run's
    result branch; ``saved`` is the result branch commit holding the
    finished log (None while it runs); ``live`` is true while its log can
    be streamed from memory. Times are Unix seconds."""

    name: str
    state: JobState
    description: str
    branch: str
    saved: str | None = None
    live: bool = False
    started: float | None = None
    finished: float | None = None
    elapsed: float | None = None  # a stored result's duration (no times kept)

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return self.elapsed
        return (self.finished or time.time()) - self.started


@dataclass(frozen=True, slots=True)
class TargetView:
    """A PR or ref with the jobs of its current head. ``title`` is the PR's
    title (empty for refs); ``history`` is the newest history-branch commit
    (None before the first)."""

    id: TargetId
    head: str
    jobs: tuple[JobView, ...]
    title: str = ""
    history: str | None = None

    @property
    def summary(self) -> Summary:
        return Summary.of({j.name: j.state for j in self.jobs})

    @property
    def repo(self) -> Repo:
        return self.id.repo


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One evaluation of a target as recorded on its history branch: the
    commit id, the source commit tested and each job's (status, descr)."""

    commit: str
    source_commit: str
    jobs: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    summary: Summary = Summary.PENDING


class LiveLogView(Protocol):
    """A running job's output (see :mod:`datakit.ci.livelog`)."""

    @property
    def closed(self) -> bool: ...

    def snapshot(self) -> bytes: ...

    def chunks(self, start: int = 0) -> object:
        """An async iterator of byte chunks from offset ``start``, ending
        when the log is closed."""
        ...


class CIView(Protocol):
    """What the web UI reads and asks for. The engine implements it; the
    UI's unit tests use a fake."""

    @property
    def config(self) -> CIConfig: ...

    @property
    def web_ui(self) -> str: ...

    def targets(self, repo: Repo | None = None) -> list[TargetView]: ...

    def target(self, ident: TargetId) -> TargetView | None: ...

    def live_log(self, branch: str) -> LiveLogView | None: ...

    async def saved_log(self, branch: str, commit: str) -> bytes | None: ...

    async def history(self, ident: TargetId, limit: int = 20) -> list[HistoryEntry]: ...

    async def builds_of_commit(self, repo: Repo, sha: str) -> list[tuple[TargetId, str]]:
        """(target, history commit) for every recorded build of ``sha``,
        from the ``commit-index`` branch (archived targets included)."""
        ...

    async def rebuild(self, branch: str) -> bool:
        """Mark a result branch for rebuild; False if no such run."""
        ...

    async def rebuild_failed(self, ident: TargetId) -> int:
        """Rebuild every failed job of a target; how many."""
        ...

    async def cancel(self, branch: str) -> bool:
        """Cancel a queued or running run; False if it is not running."""
        ...


__all__ = [
    "CONTEXT_PREFIX",
    "CIConfig",
    "CIView",
    "HistoryEntry",
    "JobSpec",
    "JobState",
    "JobView",
    "LiveLogView",
    "ProjectSpec",
    "RunResult",
    "Summary",
    "TargetId",
    "TargetView",
]
