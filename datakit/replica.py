"""A read replica: `datakit serve --mirror URL` follows a primary's branches.

What it does, every ``--mirror-interval`` seconds (0.25 by default):

1. list the primary's branches (``git ls-remote --heads``: the ref
   advertisement only, a few hundred bytes, see ``store._lsremote``);
2. for each branch whose head differs from ours, fetch it (checked as
   ``transfer.fsckObjects`` does, see ``store._fetch``; nothing is fetched
   when we already hold the commit) and move our branch with a
   compare-and-swap through the database's writer, so ``head.live``,
   watches, the reflog and ``--auto-push`` see the move exactly as they see
   a commit; a branch the primary no longer has is deleted (a mirror, as
   ``git fetch --prune``: a branch of the replica's own repository that the
   primary lacks goes too).

A head that does not descend from ours means the primary rewrote that
branch's history (a forced push, ``git reset``): the replica follows it
anyway, as a mirror must, and logs a warning naming the branch and both
commits (``datakit_replica_updates_total{kind="forced"}`` counts them).

Why polling: the Git protocol has no way to be told of a change; a
primary's own notification (its ``head.live`` over 9p) would tie replicas
to DataKit primaries and to a second port, while ``ls-remote`` works with
any remote our fetch accepts (a primary's ``--listen-git``, ``git daemon``,
a Git host over https). One listing is a TCP connection and one small
advertisement, so polling four times a second costs the primary little,
and a new head is seen within the interval plus one round trip (the
requirement is one second).

Failures (the primary down, garbage instead of the protocol, a pack that
fails the checks) are logged once per outage and per branch, not at every
poll, counted in ``datakit_replica_errors_total``, and retried with an
exponential back-off from the interval up to :data:`MAX_BACKOFF` seconds
(a listing that fails backs the whole loop off; a branch whose fetch fails
backs off alone, so one refused pack is not fetched four times a second
nor holds the other branches back); once it works again the normal
interval resumes and the recovery is logged. ``datakit_replica_lag_seconds`` is the time since the
replica last saw the primary's branches and had all of them: it grows
while the primary is unreachable or a fetch keeps failing.

The replica runs as a task in serve's nursery: cancelling it (SIGTERM)
cancels a listing or fetch in flight (its guard shuts the connection), and
a branch move that started finishes, as every write does.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from datakit import metrics
from datakit import store as st

log = logging.getLogger("datakit.replica")

MAX_BACKOFF = 4.0  # seconds between attempts while the primary fails, at most
_LISTING = ""  # the failure key of the listing itself (never a branch name)
_INTERNAL = "/"  # ... and of an unexpected error (nor is this)

T = TypeVar("T")
Write = Callable[..., Awaitable[object]]  # datakit.fs.writes.StoreWriter


class Replica:
    """Follows the branches of ``url`` into ``store`` (see the module doc).

    ``write`` is the database's :class:`~datakit.fs.writes.StoreWriter`:
    every branch move goes through it, as commits do. ``policy`` is the
    operator's remote policy (allowed schemes, timeouts, size caps)."""

    def __init__(
        self,
        store: st.Store,
        write: Write,
        url: str,
        *,
        policy: st.RemotePolicy,
        interval: float = 0.25,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.store = store
        self.write = write
        self.url = url.strip()
        self.shown = st.shown_url(self.url)
        self.policy = policy
        self.interval = interval
        self.max_backoff = max(max_backoff, interval)
        self.synced_at = time.monotonic()  # when we last had all of the primary's branches
        self._failing_since: float | None = None
        self._reported: set[str] = set()  # failures logged in this outage (branch, or "")
        self._ignored: set[str] = set()  # names we cannot hold, logged once
        # A branch whose fetch failed (a refused pack) backs off alone, the
        # others are followed at the normal interval: (retry at, delay).
        self._backoff: dict[str, tuple[float, float]] = {}
        self._limiter = trio.CapacityLimiter(1)

    def lag(self) -> float:
        """Seconds since the replica last saw the primary's branches and had them all."""
        return max(0.0, time.monotonic() - self.synced_at)

    async def run(self) -> None:
        """Follow the primary until cancelled."""
        metrics.REPLICA_LAG.set_function(self.lag)
        delay = self.interval
        while True:
            try:
                answered = await self.poll()
            except Exception:  # a bug or a failing disk: the server keeps serving
                metrics.REPLICA_ERRORS.inc()
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                if _INTERNAL not in self._reported:
                    self._reported.add(_INTERNAL)
                    log.exception("following the primary %s failed; retrying", self.shown)
                answered = False
            delay = self.interval if answered else min(delay * 2, self.max_backoff)
            await trio.sleep(delay)

    async def poll(self) -> bool:
        """One round: list, fetch, move. True if the listing worked (the
        primary answers: the normal interval), False to back off (a branch
        that fails backs off alone)."""
        seen_at = time.monotonic()
        try:
            remote, ours = await self._in_thread(self._list)
        except st.FetchError as exc:
            self._failed(_LISTING, str(exc))
            return False
        self._note_ignored(remote.ignored)
        in_sync = True
        for name in sorted(remote.heads.keys() | ours.keys()):
            new, current = remote.heads.get(name), ours.get(name)
            if new == current:
                self._backoff.pop(name, None)
                continue
            retry_at, delay = self._backoff.get(name, (0.0, self.interval))
            if time.monotonic() < retry_at:  # this branch failed lately: not yet
                in_sync = False
                continue
            try:
                moved = await self._update(name, current, new)
            except (st.StoreError, OSError) as exc:
                self._failed(name, f"branch {name}: {str(exc).removeprefix('error: ')}")
                delay = min(delay * 2, self.max_backoff)
                self._backoff[name] = (time.monotonic() + delay, delay)
                in_sync = False
                continue
            self._backoff.pop(name, None)
            in_sync = in_sync and moved
        if in_sync:
            self.synced_at = seen_at
            self._recovered()
        elif self._failing_since is None:
            self._failing_since = seen_at
        return True

    # -- one branch ----------------------------------------------------------
    async def _update(self, name: str, current: str | None, new: str | None) -> bool:
        """Move ``name`` from ``current`` to ``new`` (None: delete it);
        False if it was no longer ``current`` (the next poll looks again)."""
        if new is None:
            kind = "deleted"
            head = None
        else:
            head, kind = await self._in_thread(self._fetch, name, new, current)
        cas = functools.partial(self.store.set_head, expected=current)
        if not await self.write(cas, name, head):
            return False
        metrics.REPLICA_UPDATES.labels(kind).inc()
        if kind == "forced":
            log.warning(
                "the primary %s rewrote branch %s: %s is not a descendant of %s; "
                "following it (the replica's old history of %s is no longer on a branch)",
                self.shown,
                name,
                head,
                current,
                name,
            )
        else:
            log.debug("%s %s: %s -> %s", kind, name, current, head)
        return head == new  # the primary moved on meanwhile: not yet in sync

    def _fetch(
        self, guard: st.FetchGuard, name: str, new: str, current: str | None
    ) -> tuple[str, str]:
        """In a worker thread: the commit to move ``name`` to (fetched if we
        lack it; the primary may have moved on since the listing) and the
        kind of move."""
        head = new if self.store.has_commit(new) else self.store.fetch(self.url, name, guard=guard)
        if current is None:
            return head, "created"
        if self.store.has_commit(current) and self.store.is_ancestor(current, head):
            return head, "fast-forward"
        return head, "forced"

    def _list(self, guard: st.FetchGuard) -> tuple[st.RemoteHeads, dict[str, str]]:
        """In a worker thread: the primary's branches, then ours (read
        after theirs: a move of ours in between is caught by the CAS)."""
        remote = st.ls_remote(self.url, guard=guard)
        return remote, self.store.heads()

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(guard, *args)`` in a worker thread; a cancel (shutdown)
        aborts its network I/O through the guard and returns at once."""
        guard = st.FetchGuard(self.policy)
        try:
            return await trio.to_thread.run_sync(
                functools.partial(fn, guard, *args), abandon_on_cancel=True, limiter=self._limiter
            )
        except trio.Cancelled:
            guard.cancel()
            raise

    # -- reporting -----------------------------------------------------------
    def _failed(self, key: str, message: str) -> None:
        metrics.REPLICA_ERRORS.inc()
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        if key not in self._reported:
            self._reported.add(key)
            log.warning(
                "%s (retrying, every %g s at most, until it works)",
                message.removeprefix("error: "),
                self.max_backoff,
            )

    def _recovered(self) -> None:
        if self._failing_since is None:
            return
        if self._reported:
            log.warning(
                "following the primary %s again after %.1f s",
                self.shown,
                time.monotonic() - self._failing_since,
            )
        self._failing_since = None
        self._reported.clear()

    def _note_ignored(self, names: list[str]) -> None:
        for name in names:
            if name not in self._ignored:
                self._ignored.add(name)
                shown = name.encode("utf-8", "backslashreplace").decode("ascii", "replace")
                log.warning(
                    "the primary %s has a branch %r, not a name DataKit can hold "
                    "([A-Za-z0-9/_.-]): not followed",
                    self.shown,
                    shown[:100],
                )
