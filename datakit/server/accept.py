"""Accepting connections without letting them use up file descriptors.

Every connection holds a file descriptor, and so does every object file,
pack and lock the store opens while it commits.  Idle connections must never
leave the store without: connections past a bound are accepted and closed at
once (the client sees the connection closed rather than a hang), and when
accept(2) itself runs out of descriptors the loop backs off and says so once
per interval instead of retrying and logging ten times a second.
"""

from __future__ import annotations

import errno as E
import logging
import math
import os
import resource
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("datakit.server")

#: Descriptors kept for the store, logs and listeners whatever the bound.
FD_RESERVE = 64
#: accept(2) errors that mean "out of resources", not "this one connection failed".
CAPACITY_ERRNOS = frozenset({E.EMFILE, E.ENFILE, E.ENOMEM, E.ENOBUFS})
MIN_BACKOFF, MAX_BACKOFF = 0.1, 2.0  # seconds between accepts while out of resources
LOG_INTERVAL = 60.0  # seconds between two warnings about the same condition


def fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one, as servers do; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an unlimited soft limit (it is capped by fs.nr_open).
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.debug("cannot raise the fd limit from %d to %d", soft, target)
    return fd_limit()


def default_max_connections(limit: int | None = None) -> int:
    """Half the descriptors left after the reserve: the other half stays free
    for what the connections make the store open."""
    return max(1, ((fd_limit() if limit is None else limit) - FD_RESERVE) // 2)


class _Throttled:
    """A warning said at most once per LOG_INTERVAL, with a count of the rest."""

    def __init__(self, message: str) -> None:
        self.message = message
        self._next = -math.inf
        self._since = 0

    def __call__(self, *args: object) -> None:
        self._since += 1
        now = trio.current_time()
        if now < self._next:
            return
        more = f" ({self._since - 1} more since the last report)" if self._since > 1 else ""
        log.warning(self.message + more, *args)
        self._next = now + LOG_INTERVAL
        self._since = 0


async def serve_bounded(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    listeners: list[trio.SocketListener],
    *,
    max_connections: int,
    what: str = "connections open (--max-connections)",
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Like `trio.serve_listeners`, with at most `max_connections` served at
    once; `what` names them in the warning logged when that bound is hit."""
    open_count = 0
    refused = _Throttled(f"refusing connections: %d {what}; new ones are closed at once")
    starved = _Throttled("accept failed: %s; retrying with backoff")

    async def run(stream: trio.SocketStream) -> None:
        nonlocal open_count
        try:
            await handler(stream)
        finally:
            open_count -= 1
            await trio.aclose_forcefully(stream)

    async def accept_loop(listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        nonlocal open_count
        backoff = MIN_BACKOFF
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in CAPACITY_ERRNOS:
                        raise
                    starved(os.strerror(exc.errno or 0))
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                backoff = MIN_BACKOFF
                if open_count >= max_connections:
                    refused(open_count)
                    await trio.aclose_forcefully(stream)
                    continue
                open_count += 1
                nursery.start_soon(run, stream)

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(accept_loop, listener, nursery)
        task_status.started(listeners)
