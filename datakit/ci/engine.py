"""The CI engine (spec ci.md B.3): follow ``github-metadata``, keep one set
of runs per target head, run them in a bounded pool, and write what happens
back as commit statuses, result branches and history.

Everything is trio in one process; the client is blocking, so every store
call goes through :meth:`datakit.bridges.service.Store.run` (a worker thread,
retried on a new connection when the database restarts). The engine is also
the web UI's :class:`~datakit.ci.model.CIView`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from datakit.bridges.service import Store
from datakit.ci import metrics, storage
from datakit.ci.config import target_matches
from datakit.ci.livelog import LiveLog
from datakit.ci.mirror import Mirror, SourceError, remove_stale_checkouts
from datakit.ci.model import (
    CONTEXT_PREFIX,
    CIConfig,
    HistoryEntry,
    JobSpec,
    JobState,
    ProjectSpec,
    RunResult,
    Summary,
    TargetId,
    TargetView,
)
from datakit.ci.naming import result_branch, target_label, target_url
from datakit.ci.runner import describe, kill_leftover_jobs, run_job
from datakit.ci.runs import Attempt, Run
from datakit.client import Connection, DataKitError
from datakit.github import tree
from datakit.github.model import PR, PRId, PRState, Ref, Repo, Status, StatusId, StatusState

log = logging.getLogger("datakit.ci")

BRANCH = tree.BRANCH
SHA = re.compile(r"[0-9a-f]{40}")
FLUSH_DELAY = 0.05  # gather the status changes of one moment into one commit
WORKDIR_VAR = "DATAKIT_CI_WORKDIR"  # in every job's environment: found after a kill -9
DESCRIPTION_MAX = 140  # GitHub's limit; the bridge would cut it, then differ
RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 60.0


@dataclass
class Target:
    """A PR or ref being tested: its head and the runs of its jobs."""

    id: TargetId
    head: str
    title: str = ""
    runs: dict[str, Run] = field(default_factory=dict)
    history: str | None = None
    metadata_commit: str | None = None


def target_key(ident: TargetId) -> tuple[Repo, int, int, tuple[str, ...]]:
    """Order targets of every kind: by repo, refs then PRs (PRId and RefId
    do not compare with each other)."""
    if isinstance(ident, PRId):
        return (ident.repo, 1, ident.number, ())
    return (ident.repo, 0, 0, ident.name)


def first(idents: Iterable[TargetId]) -> TargetId:
    return min(idents, key=target_key)


def target_env(ident: TargetId) -> str:
    """``DATAKIT_CI_TARGET``: ``me/p/prs/5``, ``me/p/heads/master`` (the
    ``--canary`` syntax)."""
    if isinstance(ident, PRId):
        return f"{ident.repo}/prs/{ident.number}"
    return f"{ident.repo}/{'/'.join(ident.name)}"


class Engine:
    def __init__(
        self,
        config: CIConfig,
        store: Store,
        *,
        web_ui: str,
        workdir: Path,
        canaries: Iterable[TargetId] = (),
        pool_size: int = 2,
    ) -> None:
        self.config = config
        self.store = store
        self.web_ui = web_ui
        self.workdir = workdir
        self.canaries = frozenset(canaries)
        self.pool = trio.CapacityLimiter(pool_size)
        self.mirrors = {p.repo: Mirror(workdir, p.repo, p.source) for p in config.projects}
        self.active: dict[TargetId, Target] = {}
        self.runs: dict[str, Run] = {}  # by result branch
        self._dirty: set[Run] = set()
        self._dirty_targets: set[TargetId] = set()
        self._wake_flush = trio.Event()
        self._flushed = trio.Event()  # set (and replaced) after each flush
        self._wake_eval = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._junk_heads: set[tuple[TargetId, str]] = set()  # each said once
        self._failures = 0  # in a row, for the back-off
        # Called with a connection when the database lost our claim (see main).
        self.reclaim: Callable[[Connection], object] | None = None
        self._view: tree.View | None = None
        self._first = True
        self.ready = trio.Event()  # set after the first evaluation

    # --- the main loop --------------------------------------------------

    async def run(self) -> None:
        removed = await trio.to_thread.run_sync(remove_stale_checkouts, self.workdir)
        if removed:
            log.info("removed %d checkouts left by a CI that was killed", removed)
        killed = await trio.to_thread.run_sync(kill_leftover_jobs, WORKDIR_VAR, str(self.workdir))
        if killed:
            log.warning("killed %d processes of jobs left by a CI that was killed", killed)
        repos = [p.repo for p in self.config.projects]
        await self.store.run(partial(storage.ensure_monitors, repos=repos))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._follow_metadata)
            nursery.start_soon(self._flusher)
            await self._evaluate_loop()

    async def _follow_metadata(self) -> None:
        """Wake the evaluation at each new head of ``github-metadata`` (and
        after each reconnection)."""
        await self.store.follow(BRANCH, self._poke_eval)

    def _poke_eval(self) -> None:
        self._wake_eval.set()  # looked up each time: the loop replaces the event

    async def _evaluate_loop(self) -> None:
        while True:
            await self._wake_eval.wait()
            self._wake_eval = trio.Event()
            try:
                view = await self.store.run(self._read_view)
            except Exception as exc:  # junk in the branch must not stop the CI
                log.warning("reading %s failed: %s", BRANCH, exc)
                log.debug("the failed read", exc_info=True)
                await self._backoff()
                self._wake_eval.set()
                continue
            self._failures = 0
            self._view = view
            missing = [p.repo for p in self.config.projects if p.repo not in view.monitored]
            if missing:
                # An in-memory database restarted (so our claim went too), or
                # someone removed them.
                if self.reclaim is not None and not self._first:
                    await self.store.run(self.reclaim)
                try:
                    await self.store.run(partial(storage.ensure_monitors, repos=missing))
                except DataKitError as exc:
                    log.warning("writing .monitor files failed: %s", exc)
                    await self._backoff()
                    self._wake_eval.set()
                continue  # the commit wakes this loop again
            self._reconcile(view)
            self._repair(view)
            if self._first:
                self._first = False
                self._recover_stale(view)
                self.ready.set()

    def _read_view(self, conn: Connection) -> tree.View:
        head = conn.branch(BRANCH).head()
        previous = self._view
        if previous is None:
            return tree.view(head)
        try:
            return tree.view(head, previous)
        except (OSError, EOFError, DataKitError):  # TRANSPORT_ERRORS and the store's
            # The previous head belongs to a connection that is gone, or to
            # an in-memory database that restarted without it: read
            # everything again on this one (its own errors go to Store.run).
            return tree.view(head)

    async def _backoff(self) -> None:
        """After a failure: 1 s, doubling to a minute while failures go on
        (Store.run already waits out a database that is down; this is for
        errors it hands back, junk or conflicts)."""
        delay = min(RETRY_DELAY * 2**self._failures, MAX_RETRY_DELAY)
        self._failures = min(self._failures + 1, 16)
        await trio.sleep(delay)

    # --- targets and runs -------------------------------------------------

    def wanted(self, view: tree.View) -> dict[TargetId, tuple[str, str]]:
        """The targets to test at this head: ``{id: (head sha, title)}``."""
        found: dict[TargetId, tuple[str, str]] = {}
        snapshot = view.snapshot
        for project in self.config.projects:
            if project.repo not in view.monitored:
                continue
            prs: Iterable[PR] = (p for p in snapshot.prs if p.repo == project.repo)
            refs: Iterable[Ref] = (r for r in snapshot.refs if r.repo == project.repo)
            for pr in prs:
                if pr.state is PRState.OPEN and self._selected(project, pr.id):
                    found[pr.id] = (pr.head, pr.title)
            for ref in refs:
                if self._selected(project, ref.id):
                    found[ref.id] = (ref.head, "")
        for ident, (head, _) in list(found.items()):
            if not SHA.fullmatch(head):
                # Someone wrote junk in the branch: nothing to fetch or test.
                del found[ident]
                if (ident, head) not in self._junk_heads:
                    self._junk_heads.add((ident, head))
                    log.warning("%s: head %r is not a commit id; not tested", ident, head[:80])
        return found

    def _selected(self, project: ProjectSpec, ident: TargetId) -> bool:
        if self.canaries and ident not in self.canaries:
            return False
        return target_matches(project, ident)

    def _reconcile(self, view: tree.View) -> None:
        wanted = self.wanted(view)
        metadata = view.head.id if view.head is not None else None
        for ident in list(self.active):
            if ident not in wanted:
                gone = self.active.pop(ident)
                why = "closed" if isinstance(ident, PRId) else "deleted"
                self._release(gone, ident, f"cancelled: {target_label(ident)} {why}")
                log.info("%s is no longer a target", target_label(ident))
        for ident, (head, title) in wanted.items():
            target = self.active.get(ident)
            if target is not None and target.head == head:
                target.title = title
                continue
            if target is not None:
                self._release(target, ident, f"cancelled: superseded by {head}")
            project = self.config.project(ident.repo)
            assert project is not None
            target = Target(ident, head, title, metadata_commit=metadata)
            self.active[ident] = target
            for job in project.jobs:
                target.runs[job.name] = self._run_for(project, job, head, ident)
            self._dirty_targets.add(ident)
            self._poke_flush()
            log.info("%s at %s: %d jobs", target_label(ident), head[:12], len(project.jobs))
        for kind in ("pr", "ref"):
            count = sum(1 for t in self.active if isinstance(t, PRId) == (kind == "pr"))
            metrics.ACTIVE_TARGETS.labels(kind).set(count)

    def _repair(self, view: tree.View) -> None:
        """Rewrite the statuses of current runs that the branch does not
        hold (the database lost them in a restart, or someone changed
        them); writing them is a no-op when they are in fact there."""
        for target in self.active.values():
            for run in target.runs.values():
                wanted = self._status(run)
                if wanted is not None and view.snapshot.status(wanted.id) != wanted:
                    self._dirty.add(run)
                    self._dirty_targets.update(run.targets)
        if self._dirty:
            self._poke_flush()

    def _run_for(self, project: ProjectSpec, job: JobSpec, sha: str, ident: TargetId) -> Run:
        branch = result_branch(job, sha)
        run = self.runs.get(branch)
        if run is None:
            run = Run(branch, project, job, sha, on_change=self._changed)
            self.runs[branch] = run
            self._start(run)
        elif run.cancel_reason is not None and not run.keep_cancelled:
            # Superseded a moment ago (a branch renamed, a force-push undone)
            # and wanted again: a new attempt, not the cancellation.
            self._restart(run)
        run.targets.add(ident)
        return run

    def _release(self, target: Target, ident: TargetId, reason: str) -> None:
        """``ident`` no longer needs ``target``'s runs: cancel those no
        other target needs (#625), and forget the finished ones."""
        for run in target.runs.values():
            run.targets.discard(ident)
            if run.targets:
                continue
            if run.cancel(reason):
                log.info("%s: %s", run.title, reason)
            else:
                self._forget(run)

    def _forget(self, run: Run) -> None:
        if self.runs.get(run.branch) is run:
            del self.runs[run.branch]

    def _start(self, run: Run) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._execute, run, run.attempt)

    def _restart(self, run: Run, *, skip_cache: bool = False) -> None:
        run.restart(skip_cache=skip_cache)
        self._start(run)

    def _changed(self, run: Run) -> None:
        self._dirty.add(run)
        self._dirty_targets.update(run.targets)
        self._poke_flush()

    def _poke_flush(self) -> None:
        self._wake_flush.set()

    # --- executing one run --------------------------------------------------

    async def _execute(self, run: Run, attempt: Attempt) -> None:
        """One attempt at ``run``, in the attempt's own cancel scope (a
        superseding commit, a rebuild or a user cancels it); what happens
        after it was replaced by a newer attempt is dropped by ``run.set``."""
        with attempt.scope:
            try:
                await self._attempt(run, attempt)
            except Exception as exc:  # a bug in one run must not stop the others
                log.exception("%s: unexpected error", run.title)
                run.set(attempt, JobState.FAILURE, f"internal error: {type(exc).__name__}")
        if attempt is not run.attempt:
            return
        if run.cancel_reason is not None and not run.finished_state:
            await self._cancelled(run, attempt)
        if not run.targets and run.finished_state:
            self._forget(run)

    async def _attempt(self, run: Run, attempt: Attempt) -> None:
        if not attempt.skip_cache:
            stored = await self.store.run(
                partial(storage.read_run, branch=run.branch, with_log=False)
            )
            if stored is not None and stored.result is not None and not stored.rebuild_requested:
                self._finish(run, attempt, stored.result, stored.commit)
                run.finished = None  # when is not known here (only how long it took)
                return
        for need in run.job.needs:
            dependency = self._dependency(run, need)
            while dependency.state is None:
                await dependency.wait_change()
            if not dependency.finished_state:
                run.set(attempt, JobState.WAITING, f"Waiting for {need}")
                while not dependency.finished_state:
                    await dependency.wait_change()
            if dependency.state is not JobState.SUCCESS:
                run.set(attempt, JobState.FAILURE, f"blocked by {need}")
                return
        run.set(attempt, JobState.QUEUED, "Queued")
        metrics.QUEUE_LENGTH.inc()
        try:
            await self.pool.acquire_on_behalf_of(attempt)
        finally:
            metrics.QUEUE_LENGTH.dec()
        try:
            result = await self._run_job(run, attempt)
        finally:
            self.pool.release_on_behalf_of(attempt)
        if result is None:
            return
        # Not shielded: a cancelled attempt's result is not needed, and a
        # write the database never answers must not hold up a stop.
        commit = await self.store.run(partial(storage.write_run, branch=run.branch, result=result))
        await self._pending_written(run, attempt)
        self._finish(run, attempt, result, commit)
        metrics.JOBS.labels(result.state.value).inc()
        metrics.JOB_DURATION.observe(result.duration)

    async def _pending_written(self, run: Run, attempt: Attempt) -> None:
        """A job that ran says `pending` before it says how it ended (spec
        A.3, CI-2). The flusher gathers the changes of FLUSH_DELAY into one
        commit, so a job quicker than that would go straight to its end:
        wait until a status of this attempt from before the end is written.
        (A result found at start is said at once: it never was pending.)"""
        while not run.published and attempt is run.attempt:
            self._poke_flush()
            await self._flushed.wait()

    def _dependency(self, run: Run, need: str) -> Run:
        """The run of the job ``need`` on the same commit (made if no
        target has it: a target's runs are all made together, so only a
        run restarted on its own finds it missing)."""
        job = run.project.job(need)
        assert job is not None  # the configuration checked needs
        branch = result_branch(job, run.sha)
        dependency = self.runs.get(branch)
        if dependency is None:
            dependency = Run(branch, run.project, job, run.sha, on_change=self._changed)
            self.runs[branch] = dependency
            self._start(dependency)
        dependency.targets.update(run.targets)
        return dependency

    async def _run_job(self, run: Run, attempt: Attempt) -> RunResult | None:
        output = LiveLog()
        if attempt is run.attempt:
            run.log = output
        run.set(attempt, JobState.RUNNING, f"Running {run.job.name}")
        metrics.RUNNING.inc()
        ident = first(run.targets) if run.targets else None
        try:
            mirror = self.mirrors[run.project.repo]
            try:
                await mirror.ensure(run.sha, ident)
                # Applied after the job's own env: it cannot pretend to be
                # another commit.
                env = {WORKDIR_VAR: str(self.workdir), "DATAKIT_CI_COMMIT": run.sha}
                if ident is not None:
                    env["DATAKIT_CI_TARGET"] = target_env(ident)
                async with mirror.checkout(run.sha) as checkout:
                    outcome = await run_job(run.job, checkout, env, output)
            except SourceError as exc:
                # Not stored: the source may come back; a rebuild or the next
                # start tries again.
                output.write(f"datakit-ci: {exc}\n".encode())
                output.close()
                run.set(attempt, JobState.FAILURE, _cap(f"source unavailable: {exc}"))
                return None
            description, failure = describe(run.job, outcome)
            output.close()
            return RunResult(
                description=description,
                failure=failure,
                exit_status=outcome.exit_status,
                duration=outcome.duration,
                log=output.snapshot(),
            )
        finally:
            metrics.RUNNING.dec()

    async def _cancelled(self, run: Run, attempt: Attempt) -> None:
        reason = _cap(run.cancel_reason or "cancelled")
        if run.log is not None and not run.log.closed:
            run.log.write(f"\ndatakit-ci: {reason}\n".encode())
            run.log.close()
        if run.state is None and not run.keep_cancelled and not self._pending_here(run):
            return  # cancelled while looking its result up: nothing was said about it
        metrics.JOBS.labels("cancelled").inc()
        if run.keep_cancelled:
            result = RunResult(
                description=reason,
                failure=reason,
                exit_status=None,
                duration=_elapsed(run),
                log=run.log.snapshot() if run.log is not None else b"",
            )
            try:
                saved = await self.store.run(
                    partial(storage.write_run, branch=run.branch, result=result)
                )
            except DataKitError as exc:
                log.warning("%s: storing the cancellation failed: %s", run.title, exc)
            else:
                if attempt is run.attempt:
                    run.saved = saved
        run.set(attempt, JobState.FAILURE, reason)

    def _pending_here(self, run: Run) -> bool:
        """Does the branch show a pending status for ``run`` (left by a CI
        that died while it ran)? Then cancelling it must say so."""
        if self._view is None:
            return False
        status = self._view.snapshot.status(StatusId(run.project.repo, run.sha, run.job.context))
        return status is not None and status.state is StatusState.PENDING

    def _finish(self, run: Run, attempt: Attempt, result: RunResult, commit: str) -> None:
        if attempt is not run.attempt:
            return
        run.saved = commit
        run.elapsed = result.duration
        run.set(attempt, result.state, result.description)

    # --- statuses and history -----------------------------------------------

    async def _flusher(self) -> None:
        while True:
            await self._wake_flush.wait()
            self._wake_flush = trio.Event()
            await trio.sleep(FLUSH_DELAY)
            runs, self._dirty = self._dirty, set()
            targets, self._dirty_targets = self._dirty_targets, set()
            # What this flush says about runs still going (their pending).
            going = [(r, r.attempt) for r in runs if r.state is not None and not r.finished_state]
            try:
                await self._flush(runs, targets)
            except Exception as exc:  # logged and retried with the next change
                log.warning("writing statuses failed: %s", exc)
                log.debug("the failed write", exc_info=True)
                self._dirty |= runs
                self._dirty_targets |= targets
                await self._backoff()
                self._wake_flush.set()
            else:
                self._failures = 0
                for run, attempt in going:
                    if attempt is run.attempt:
                        run.published = True
                self._flushed.set()
                self._flushed = trio.Event()

    def _status(self, run: Run) -> Status | None:
        if run.state is None:
            return None
        return Status(
            repo=run.project.repo,
            commit=run.sha,
            context=run.job.context,
            state=run.state.status,
            description=run.description,
            target_url=target_url(self.web_ui, run.project.repo, run.sha, run.job.name),
        )

    async def _flush(self, runs: set[Run], targets: set[TargetId]) -> None:
        labels: dict[tuple[Repo, str, str], str] = {}
        statuses: list[Status] = []
        for run in sorted(runs, key=lambda r: (r.sha, r.job.name)):
            status = self._status(run)
            if status is None:
                continue
            statuses.append(status)
            label = target_label(first(run.targets)) if run.targets else run.sha[:12]
            labels[(run.project.repo, run.sha, run.job.name)] = label

        written: list[Status] = []

        def message(changed: list[Status]) -> str:
            # Upstream's wording (spec A.3 step 3), naming only what changed.
            written[:] = changed
            by_target: dict[str, list[tuple[str, str]]] = {}
            for status in changed:
                job = status.context[-1]
                label = labels[(status.repo, status.commit, job)]
                by_target.setdefault(label, []).append((job, status.description or ""))
            return storage.combine_messages(
                [storage.status_message(t, items) for t, items in sorted(by_target.items())]
            )

        if statuses:
            committed: bool = await self.store.run(
                partial(storage.write_statuses, statuses=statuses, message=message)
            )
            if committed:
                metrics.STATUS_UPDATES.inc(len(written))
        for ident in sorted(targets, key=target_key):
            target = self.active.get(ident)
            if target is None or any(r.state is None for r in target.runs.values()):
                continue  # gone, or still looking up results: written later
            outputs = {name: self._output(run) for name, run in target.runs.items()}
            summary = Summary.of({n: r.state for n, r in target.runs.items() if r.state})
            commit = await self.store.run(
                partial(
                    storage.write_history,
                    ident=ident,
                    source_commit=target.head,
                    metadata_commit=target.metadata_commit,
                    outputs=outputs,
                    summary=summary,
                )
            )
            if commit is not None:
                target.history = commit

    def _output(self, run: Run) -> storage.JobOutput:
        logs: Any = None
        if run.saved is not None:
            logs = {
                "title": run.job.name,
                "branch": run.branch,
                "commit": run.saved,
                "failed": run.state is JobState.FAILURE,
            }
        elif run.log is not None and not run.log.closed:
            logs = {"branch": run.branch}
        state = run.state or JobState.QUEUED
        return storage.JobOutput(state.status.value, run.description, logs)

    def _recover_stale(self, view: tree.View) -> None:
        """Spec B.3 step 6: a ``pending`` ``ci/datakit/*`` status left by a
        CI that died, on a commit no target has any more, would stay pending
        forever: say it was abandoned. (Pending statuses on current heads
        are rewritten by their runs.)"""
        current = {(r.project.repo, r.sha, r.job.name) for r in self.runs.values()}
        stale: list[Status] = []
        for status in view.snapshot.statuses:
            ctx = status.context
            if (
                status.state is StatusState.PENDING
                and ctx[: len(CONTEXT_PREFIX)] == CONTEXT_PREFIX
                and len(ctx) == len(CONTEXT_PREFIX) + 1
                and self.config.project(status.repo) is not None
                and (status.repo, status.commit, ctx[-1]) not in current
            ):
                stale.append(
                    Status(
                        status.repo,
                        status.commit,
                        ctx,
                        StatusState.FAILURE,
                        "cancelled: no longer a target (found pending at start)",
                        status.target_url,
                    )
                )
        if stale and self._nursery is not None:
            message = storage.combine_messages(
                [
                    storage.status_message(
                        f"{s.repo}/commit/{s.commit}", [(s.context[-1], s.description or "")]
                    )
                    for s in stale
                ]
            )
            self._nursery.start_soon(self._write_stale, stale, message)

    async def _write_stale(self, stale: list[Status], message: str) -> None:
        try:
            await self.store.run(partial(storage.write_statuses, statuses=stale, message=message))
        except DataKitError as exc:
            log.warning("clearing stale pending statuses failed: %s", exc)

    # --- actions (the web UI) ----------------------------------------------

    async def rebuild(self, branch: str) -> bool:
        """Run ``branch``'s job again, and the jobs that need it (#625):
        their result branches are marked (upstream's ``rebuild-requested``,
        so a restart in between still rebuilds) and their attempts replaced.
        A failure that was never stored (a source that was unavailable, a
        blocked job) is rebuilt too; False if there is no such run."""
        run = self.runs.get(branch)
        marked = await self.store.run(partial(storage.request_rebuild, branch=branch))
        if run is None:
            return bool(marked)
        dependants = self._dependants(run)
        for dependant in dependants:
            await self.store.run(partial(storage.request_rebuild, branch=dependant.branch))
        self._restart(run, skip_cache=True)
        for dependant in dependants:
            self._restart(dependant, skip_cache=True)
        return True

    def _dependants(self, run: Run) -> list[Run]:
        """Runs on the same commit that need ``run``, transitively."""
        found: list[Run] = []
        names = {run.job.name}
        changed = True
        while changed:
            changed = False
            for other in self.runs.values():
                if (
                    other.sha == run.sha
                    and other is not run
                    and other not in found
                    and names & set(other.job.needs)
                ):
                    found.append(other)
                    names.add(other.job.name)
                    changed = True
        return found

    async def rebuild_failed(self, ident: TargetId) -> int:
        target = self.active.get(ident)
        if target is None:
            return 0
        count = 0
        for run in list(target.runs.values()):
            if run.state is JobState.FAILURE and await self.rebuild(run.branch):
                count += 1
        return count

    async def cancel(self, branch: str) -> bool:
        run = self.runs.get(branch)
        if run is None:
            return False
        return run.cancel("cancelled by a user", keep=True)

    # --- reading (the web UI) -----------------------------------------------

    def target_view(self, target: Target) -> TargetView:
        return TargetView(
            id=target.id,
            head=target.head,
            jobs=tuple(run.view() for run in target.runs.values()),
            title=target.title,
            history=target.history,
        )

    def targets(self, repo: Repo | None = None) -> list[TargetView]:
        return [
            self.target_view(t)
            for ident, t in sorted(self.active.items(), key=lambda item: target_key(item[0]))
            if repo is None or ident.repo == repo
        ]

    def target(self, ident: TargetId) -> TargetView | None:
        target = self.active.get(ident)
        return self.target_view(target) if target is not None else None

    def live_log(self, branch: str) -> LiveLog | None:
        run = self.runs.get(branch)
        if run is None or run.log is None or run.saved is not None:
            return None
        return run.log

    async def saved_log(self, branch: str, commit: str) -> bytes | None:
        return await self.store.run(partial(storage.read_log, branch=branch, commit=commit))

    async def history(self, ident: TargetId, limit: int = 20) -> list[HistoryEntry]:
        return await self.store.run(partial(storage.read_history, ident=ident, limit=limit))

    async def builds_of_commit(self, repo: Repo, sha: str) -> list[tuple[TargetId, str]]:
        return await self.store.run(partial(storage.builds_of_commit, repo=repo, sha=sha))


def _cap(text: str) -> str:
    return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 1] + "…"


def _elapsed(run: Run) -> float:
    if run.started is None:
        return 0.0
    return max(0.0, (run.finished or time.time()) - run.started)


__all__ = ["Engine", "Target", "target_env"]
