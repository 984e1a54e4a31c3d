"""One reconciliation step of the GitHub bridge (spec/bridges.md §3.2, §3.6).

The bridge holds two pictures of the world: the *bridge snapshot*, what it
believes GitHub holds (kept in memory, fed by imports, webhook events and
the calls it made), and the *DataKit snapshot*, read from the metadata
branch at each step. A step:

1. reads the branch in a transaction and works out which elements clients
   changed since the last step (the Git diff between the commit the bridge
   last handled and the transaction's base, plus pushes that failed);
2. applies the webhook events received since the last step;
3. imports new repositories (a ``.monitor`` appeared), ``.dirty`` ones,
   and every known one on a resync or poll;
4. pushes what clients changed and the capabilities allow (``x`` on the
   first step, ``w`` afterwards) to GitHub, and records what was sent;
5. prunes closed PRs and dead commits;
6. writes the bridge snapshot over the branch in that same transaction,
   aborting it when nothing differs: an empty commit would wake the bridge
   again (upstream #397's endless loop).

Anything a client changed that is not pushed is overwritten by GitHub's
value on the next write; refs are read-only (a warning says so), status
removals cannot be sent (GitHub cannot delete a status). A push that fails
keeps the client's value in the branch and is retried on the next step.

The step is the only writer of the bridge snapshot, and the caller runs at
most one step at a time. The client is blocking: its calls run in worker
threads, one thread call per batch of reads or writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import trio

from datakit.client import Branch, Commit, Conflict, Transaction
from datakit.github import tree as layout
from datakit.github.capabilities import Capabilities
from datakit.github.model import (
    PR,
    Diff,
    Element,
    ElementId,
    Event,
    PRId,
    PRState,
    PRUpdated,
    Ref,
    RefId,
    RefRemoved,
    RefUpdated,
    Repo,
    Snapshot,
    Status,
    StatusId,
    StatusUpdated,
    repo_of,
)
from datakit.github.model import Commit as GitHubCommit

log = logging.getLogger("datakit.bridges.github.sync")

T = TypeVar("T")
Dirty = Repo | PRId | RefId

COMMIT_ATTEMPTS = 5
"""Transactions tried per step when the branch moved under the bridge and
the automatic merge conflicted (upstream: 5); then the step is abandoned
and the next trigger starts over."""


class APIError(Exception):
    """The default error class a step catches from GitHub calls; the service
    passes the API's own (``GitHubError``)."""


class API(Protocol):
    """The GitHub calls a step makes (``datakit.bridges.github.api.GitHubAPI``).

    Every method raises the API's error class on a failed call; the step
    logs it and goes on."""

    async def import_repo(self, repo: Repo, *, if_changed: bool = True) -> Snapshot | None:
        """Everything about ``repo`` (open PRs with comments, refs, statuses of
        their heads); None when ``if_changed`` and GitHub says nothing changed
        since the last import (conditional requests, all 304)."""
        ...

    async def pr(self, repo: Repo, number: int) -> PR | None: ...

    async def ref(self, repo: Repo, name: tuple[str, ...]) -> Ref | None: ...

    async def statuses(self, repo: Repo, sha: str) -> Sequence[Status]: ...

    async def with_comments(self, pr: PR) -> PR:
        """``pr`` with its comments fetched (webhook payloads carry only the body)."""
        ...

    async def set_status(self, status: Status) -> object: ...

    async def set_pr(self, pr: PR) -> object: ...

    async def ensure_hook(self, repo: Repo, url: str, secret: str) -> object: ...


@dataclass(frozen=True)
class Webhook:
    """Where GitHub should send events, and the secret it signs them with."""

    url: str
    secret: str


@dataclass
class Trigger:
    """What woke a step; several triggers coalesce into one."""

    events: list[Event] = field(default_factory=list)
    resync: bool = False  # re-import every known repository
    poll: bool = False  # the same, with conditional requests
    head: bool = False  # the branch head changed

    def merge(self, other: Trigger) -> None:
        self.events.extend(other.events)
        self.resync |= other.resync
        self.poll |= other.poll
        self.head |= other.head


@dataclass
class Outcome:
    """What a step did, for logs, metrics and tests."""

    base: Commit | None = None  # the branch head the (last) transaction started from
    committed: Commit | None = None  # the bridge's commit, if it made one
    message: str | None = None
    pushed: list[Element] = field(default_factory=list)
    failed: bool = False  # some GitHub call failed: worth another step soon
    gave_up: bool = False  # the branch kept moving: the commit was not made


@dataclass
class _View:
    """The branch as a step's transaction sees it."""

    tx: Transaction
    base: Commit | None  # the commit the transaction started from
    datakit: Snapshot  # what the branch holds for the monitored repositories
    monitored: frozenset[Repo]
    dirty: frozenset[Dirty]
    changed: frozenset[ElementId] | None  # None: everything (first step)


class Sync:
    """The reconciliation state of one bridge process: the bridge snapshot,
    the last branch commit handled, and what is pending."""

    def __init__(
        self,
        api: API,
        branch: Branch,
        capabilities: Capabilities,
        *,
        errors: tuple[type[BaseException], ...] = (APIError,),
        webhook: Webhook | None = None,
    ) -> None:
        self.api = api
        self.branch = branch
        self.capabilities = capabilities
        self.errors = errors
        self.webhook = webhook
        self.bridge = Snapshot()
        self.first = True
        self.last: Commit | None = None  # the last branch commit handled
        self.known: set[Repo] = set()  # monitored and imported
        # Repositories whose first sync (exclusive resources: DataKit wins)
        # is done. Per repository: one whose first import failed gets its
        # first sync on the step that imports it.
        self.synced: set[Repo] = set()
        self.hooked: set[Repo] = set()
        self.pending: set[ElementId] = set()  # pushes that failed: tried again
        self.to_import: set[Repo] = set()  # imports that failed: tried again
        self.warned: set[object] = set()
        self._seen: layout.View | None = None  # the branch at the last step's base

    # -- the step

    async def step(self, trigger: Trigger | None = None) -> Outcome:
        """One reconciliation; see the module docstring."""
        trigger = trigger or Trigger()
        outcome = Outcome()
        await self._apply_events(trigger.events, outcome)
        imported: set[Repo] = set()
        handled: set[Dirty] = set()
        everything = trigger.resync or trigger.poll
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            view = await _thread(self._read)
            try:
                if everything:
                    everything = False
                    await self._import_all(view, outcome, imported, trigger.resync)
                await self._import(view, outcome, imported, handled)
                new = await self._export(view, outcome)
                done = await _thread(self._write, view, new, handled, outcome)
            except BaseException:
                # Also when cancelled (SIGTERM): leave nothing open behind.
                with trio.move_on_after(5) as scope:
                    scope.shield = True
                    await _thread(view.tx.abort)
                raise
            if done:
                self.first = False
                self.synced = set(self.known)
                return outcome
            log.info("the branch moved during the step (attempt %d): starting over", attempt)
        log.warning(
            "%s kept changing: %d commits conflicted; waiting for the next change",
            self.branch.name,
            COMMIT_ATTEMPTS,
        )
        outcome.gave_up = True
        return outcome

    # -- 1. reading the branch

    def _read(self) -> _View:
        tx = self.branch.transaction()
        try:
            parents = tx.parents()
            base = parents[0] if parents else None
            # The transaction starts from `base`: read that commit, following
            # the branch from the previous step's view (only what changed).
            seen = layout.view(base, self._seen)
            self._seen = seen
            monitored = seen.monitored
            datakit = seen.snapshot
            dirty = frozenset(i for i in seen.dirty if repo_of(i) in monitored)
            changed: frozenset[ElementId] | None
            if self.first or self.last is None:
                changed = None
            elif base is None or base == self.last:
                changed = frozenset()
            else:
                changed = layout.changed_ids(self.last, base).ids
        except BaseException:
            tx.abort()
            raise
        return _View(tx, base, datakit, monitored, dirty, changed)

    # -- 2. webhook events

    async def _apply_events(self, events: Iterable[Event], outcome: Outcome) -> None:
        for event in events:
            element = _event_element(event)
            if repo_of(element) not in self.known:
                log.debug("event about %s, which is not monitored: ignored", repo_of(element))
                continue
            if not self.capabilities.allows("r", element):
                continue
            head = _event_head(event)
            new_head = head is not None and head not in self.bridge.commits
            if isinstance(event, PRUpdated) and event.pr.state is PRState.OPEN:
                event = PRUpdated(await self._comments(event.pr, outcome))
            self.bridge = self.bridge.apply(event)
            log.info("event: %s", _describe_event(event))
            if new_head and head is not None:
                await self._fetch_statuses(head, outcome)

    async def _comments(self, pr: PR, outcome: Outcome) -> PR:
        """A webhook's PR with its comments (the payload has only the body)."""
        try:
            return await self.api.with_comments(pr)
        except self.errors as e:
            log.warning("comments of %s: %s", pr.id, e)
            outcome.failed = True
            known = self.bridge.pr(pr.id)
            if known is not None:
                return replace(pr, comments=(*pr.comments[:1], *known.comments[1:]))
            return pr

    async def _fetch_statuses(self, commit: GitHubCommit, outcome: Outcome) -> None:
        """Statuses of a commit the bridge had not seen (a new PR or ref head)."""
        try:
            statuses = await self.api.statuses(commit.repo, commit.sha)
        except self.errors as e:
            log.warning("statuses of %s: %s", commit, e)
            outcome.failed = True
            return
        readable = [s for s in statuses if self.capabilities.allows("r", s)]
        self.bridge = self.bridge.with_elements(readable)

    # -- 3. imports

    async def _import_all(
        self, view: _View, outcome: Outcome, imported: set[Repo], full: bool
    ) -> None:
        """Every known repository: a resync asks for everything (``full``),
        a poll only for what changed."""
        for repo in sorted(self.known & view.monitored):
            if repo not in imported:
                imported.add(repo)
                await self._import_repo(repo, outcome, if_changed=not full)

    async def _import(
        self, view: _View, outcome: Outcome, imported: set[Repo], handled: set[Dirty]
    ) -> None:
        for repo in sorted(self.known - view.monitored):
            log.info("%s is no longer monitored", repo)
            self.known.discard(repo)
            self.bridge = self.bridge.without([repo])
        self.to_import &= view.monitored
        new = view.monitored - self.known
        dirty_repos = {i for i in view.dirty if isinstance(i, Repo)}
        for repo in sorted(new | self.to_import | dirty_repos):
            if repo in imported:
                if repo in dirty_repos and repo not in self.to_import:
                    handled.add(repo)
                continue
            imported.add(repo)
            if repo in new:
                log.info("monitoring %s", repo)
                await self._register_hook(repo, outcome)
            if await self._import_repo(repo, outcome):
                self.known.add(repo)
                if repo in dirty_repos:
                    handled.add(repo)
        for repo in sorted(self.known - self.hooked - new):  # earlier failures
            await self._register_hook(repo, outcome)
        for ident in sorted(view.dirty - dirty_repos, key=str):
            if ident in handled or repo_of(ident) not in self.known:
                continue
            if repo_of(ident) in imported or await self._import_one(ident, outcome):
                handled.add(ident)

    async def _import_repo(self, repo: Repo, outcome: Outcome, *, if_changed: bool = False) -> bool:
        """Replace what the bridge knows of ``repo`` with GitHub's state;
        False when the call failed (the repository is tried again)."""
        try:
            snapshot = await self.api.import_repo(repo, if_changed=if_changed)
        except self.errors as e:
            log.warning("import of %s failed: %s", repo, e)
            self.to_import.add(repo)
            outcome.failed = True
            return False
        self.to_import.discard(repo)
        if snapshot is None:
            log.debug("%s unchanged on GitHub", repo)
            if repo not in self.bridge.repos:
                self.bridge = self.bridge.with_elements([repo])
            return True
        self.bridge = self.bridge.replace_repo(repo, self._readable(snapshot))
        log.info("imported %s", repo)
        return True

    async def _import_one(self, ident: Dirty, outcome: Outcome) -> bool:
        """A ``.dirty`` PR or ref: fetch that one item again."""
        try:
            found: PR | Ref | None
            if isinstance(ident, PRId):
                found = await self.api.pr(ident.repo, ident.number)
            elif isinstance(ident, RefId):
                found = await self.api.ref(ident.repo, ident.name)
            else:
                return False
        except self.errors as e:
            log.warning("re-import of %s failed: %s", ident, e)
            outcome.failed = True
            return False
        if found is None or not self.capabilities.allows("r", found):
            self.bridge = self.bridge.without([ident])
        else:
            new_head = found.head_commit not in self.bridge.commits
            self.bridge = self.bridge.with_elements([found])
            if new_head:
                await self._fetch_statuses(found.head_commit, outcome)
        log.info("re-imported %s", ident)
        return True

    def _readable(self, snapshot: Snapshot) -> Snapshot:
        """What ``r`` allows of an import (status reads filtered per context)."""
        return Snapshot.of(
            e
            for e in snapshot.elements()
            if not isinstance(e, PR | Ref | Status) or self.capabilities.allows("r", e)
        )

    async def _register_hook(self, repo: Repo, outcome: Outcome) -> None:
        """Point ``repo``'s hook at us; a failure is tried again next step."""
        if self.webhook is None or repo in self.hooked:
            return
        if not self.capabilities.can("w", "webhook"):
            self._warn_once(("webhook",), "no webhook:w capability: no web hooks registered")
            return
        try:
            await self.api.ensure_hook(repo, self.webhook.url, self.webhook.secret)
        except self.errors as e:
            log.warning("registering the web hook of %s failed: %s", repo, e)
            outcome.failed = True
            return
        self.hooked.add(repo)
        log.info("web hook of %s points at %s", repo, self.webhook.url)

    # -- 4. export

    async def _export(self, view: _View, outcome: Outcome) -> Snapshot:
        """Push what clients changed; return the snapshot to write."""
        datakit = _only(view.datakit, self.known)
        wanted = datakit.diff(_only(self.bridge, self.known))
        fresh = self.known - self.synced  # their first sync is now

        def in_fresh(item: Element | ElementId) -> bool:
            return repo_of(item) in fresh

        first = wanted.filter(in_fresh, in_fresh)
        later = wanted.filter(lambda e: not in_fresh(e), lambda i: not in_fresh(i))
        if view.changed is not None:
            candidates = view.changed | self.pending
            later = later.filter(lambda e: e.id in candidates, lambda i: i in candidates)
            self._explain_refused(later, self.capabilities.exportable(later, first_sync=False))
        allowed_first = self.capabilities.exportable(first, first_sync=True)
        allowed_later = self.capabilities.exportable(later, first_sync=False)
        allowed = Diff(
            allowed_first.updates | allowed_later.updates,
            allowed_first.removals | allowed_later.removals,
        )
        failed: set[ElementId] = set()
        for element in allowed.sorted_updates():
            if isinstance(element, PR):
                await self._push_pr(element, failed, outcome)
            elif isinstance(element, Status):
                await self._push_status(element, failed, outcome)
        self.pending = failed
        # What GitHub holds of what the bridge follows: closed PRs and
        # commits no head points at go from memory too, or status events
        # about other commits would pile up there forever.
        self.bridge = new = self.bridge.prune()
        if failed:
            # Keep the client's value in the branch until GitHub takes it.
            outcome.failed = True
            new = new.with_elements(e for e in datakit.elements() if e.id in failed)
        return new

    def _explain_refused(self, wanted: Diff, allowed: Diff) -> None:
        for ref in wanted.refs:
            self._warn_once(
                (ref.id, ref.head),
                f"{ref.id}: refs are read-only; restoring GitHub's value over {ref.head}",
            )
        for ident in wanted.sorted_removals():
            if isinstance(ident, RefId):
                self._warn_once((ident, None), f"{ident}: refs are read-only; restoring it")
            elif isinstance(ident, StatusId):
                log.info("%s: GitHub cannot delete a status; restoring it", ident)
            elif isinstance(ident, PRId):
                log.info("%s: a PR cannot be deleted (write closed to its state)", ident)
        for element in wanted.updates - allowed.updates:
            if isinstance(element, PR | Status):
                log.info("%s: no write capability; restoring GitHub's value", element.id)

    def _warn_once(self, key: object, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning("%s", text)

    async def _push_pr(self, pr: PR, failed: set[ElementId], outcome: Outcome) -> None:
        known = self.bridge.pr(pr.id)
        if known is not None and (known.title, known.state, known.base) == (
            pr.title,
            pr.state,
            pr.base,
        ):
            return  # only head, owner or comments differ: nothing GitHub takes
        try:
            result = await self.api.set_pr(pr)
        except self.errors as e:
            log.warning("%s: update failed: %s", pr.id, e)
            failed.add(pr.id)
            return
        if isinstance(result, PR):
            sent = replace(result, comments=known.comments) if known is not None else result
        elif known is not None:
            sent = replace(known, title=pr.title, state=pr.state, base=pr.base)
        else:
            sent = pr
        self.bridge = self.bridge.with_elements([sent])
        outcome.pushed.append(pr)
        log.info("%s: sent title %r, state %s, base %s", pr.id, pr.title, pr.state, pr.base)

    async def _push_status(self, status: Status, failed: set[ElementId], outcome: Outcome) -> None:
        try:
            result = await self.api.set_status(status)
        except self.errors as e:
            log.warning("%s: update failed: %s", status.id, e)
            failed.add(status.id)
            return
        sent = result if isinstance(result, Status) else status
        self.bridge = self.bridge.with_elements([sent])
        outcome.pushed.append(status)
        log.info("%s: sent %s", status.id, status.state)

    # -- 6. writing the branch

    def _write(self, view: _View, new: Snapshot, handled: set[Dirty], outcome: Outcome) -> bool:
        """Write ``new`` over the known repositories in ``view.tx``; False
        when the commit conflicted with a concurrent one (try again)."""
        tx = view.tx
        outcome.base = view.base
        old = _only(view.datakit, self.known)
        clean = {i for i in view.dirty if i in handled}
        summary = layout.write(tx, old, _only(new, self.known), clean)
        if layout.is_empty(summary):
            tx.abort()
            self.last = view.base
            return True
        message = layout.commit_message(summary)
        try:
            tx.commit(message)
        except Conflict:
            tx.abort()
            return False
        head = self.branch.head()
        own = _own_commit(head, view.base, message)
        self.last = own or view.base
        outcome.committed = own or head
        outcome.message = message
        log.info("committed: %s", message.splitlines()[0])
        return True


def _only(snapshot: Snapshot, repos: set[Repo] | frozenset[Repo]) -> Snapshot:
    """The part of ``snapshot`` about these repositories."""
    return Snapshot.of(e for e in snapshot.elements() if repo_of(e) in repos)


OWN_COMMIT_SEARCH = 256
"""How many commits of the branch's history are searched for the bridge's
own commit after it committed (clients may have committed on top meanwhile)."""


def _own_commit(head: Commit | None, base: Commit | None, message: str) -> Commit | None:
    """The commit a transaction made, found from the branch head: the head
    itself, or a commit below it (under the automatic merge with a
    concurrent commit, and under whatever clients committed since).

    The next step's "what did clients change" starts there, so the bridge's
    own writes never read as client changes (which could send a value back
    to GitHub that a webhook has since replaced)."""
    expected = [base] if base is not None else []
    todo = [head] if head is not None else []
    seen: set[str] = set()
    while todo and len(seen) < OWN_COMMIT_SEARCH:
        commit = todo.pop(0)  # breadth first: ours is near the top
        if commit.id in seen:
            continue
        seen.add(commit.id)
        if commit.message.rstrip("\n") == message.rstrip("\n") and commit.parents == expected:
            return commit
        if base is not None and commit.id == base.id:
            continue  # ours is a child of base: not below it
        todo.extend(commit.parents)
    return None


def _event_element(event: Event) -> Element | ElementId:
    if isinstance(event, PRUpdated):
        return event.pr
    if isinstance(event, RefUpdated):
        return event.ref
    if isinstance(event, StatusUpdated):
        return event.status
    return event.id


def _event_head(event: Event) -> GitHubCommit | None:
    if isinstance(event, PRUpdated) and event.pr.state is PRState.OPEN:
        return event.pr.head_commit
    if isinstance(event, RefUpdated):
        return event.ref.head_commit
    return None


def _describe_event(event: Event) -> str:
    if isinstance(event, RefRemoved):
        return f"{event.id} removed"
    return str(_event_element(event))


async def _thread(fn: Callable[..., T], *args: object) -> T:
    """Client calls block: run a batch of them in a worker thread."""
    return await trio.to_thread.run_sync(fn, *args)
