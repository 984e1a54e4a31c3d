"""Accept 9p connections on every endpoint and run one session per connection."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable

import trio

from datakit.server.accept import default_max_connections, serve_bounded
from datakit.server.endpoints import (
    Endpoint,
    open_listeners,
    remove_socket_file,
    socket_file_id,
)
from datakit.server.session import Limits, Session
from datakit.vfs import Directory

log = logging.getLogger("datakit.server")


async def serve_9p(
    listeners: list[trio.SocketListener],
    make_root: Callable[[], Directory],
    *,
    limits: Limits | None = None,
    read_only: bool = False,
    read_only_reason: str | None = None,
    max_connections: int | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; `make_root` builds each connection's filesystem.

    At most `max_connections` at once (default: from the fd limit, see `accept`).
    `read_only_reason` (a replica's "a replica of URL; write to the primary")
    makes the server read-only and follows "Read-only file system: " in the
    EROFS error a 9P2000.u client sees."""

    async def handle(stream: trio.SocketStream) -> None:
        try:
            if stream.socket.family in (socket.AF_INET, socket.AF_INET6):
                # Replies are whole messages written at once: Nagle only adds latency.
                stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        try:
            await Session(
                stream,
                make_root,
                limits,
                read_only=read_only,
                read_only_reason=read_only_reason,
            ).run()
        except Exception:  # one connection's failure must never stop the server
            log.exception("9p session ended with an internal error")

    if max_connections is None:
        max_connections = default_max_connections()
    await serve_bounded(handle, listeners, max_connections=max_connections, task_status=task_status)


async def bind_all(endpoints: list[Endpoint]) -> list[trio.SocketListener]:
    """Bind every endpoint, or raise OSError naming the one that failed."""
    return [listener for bound in await bind_each(endpoints) for listener in bound]


async def bind_each(endpoints: list[Endpoint]) -> list[list[trio.SocketListener]]:
    """The listeners of each endpoint, in order (tcp://localhost binds two)."""
    bound: list[list[trio.SocketListener]] = []
    for endpoint in endpoints:
        try:
            bound.append(await open_listeners(endpoint))
        except OSError as exc:
            for listener in (lst for group in bound for lst in group):
                await listener.aclose()
            for done in endpoints[: len(bound)]:  # a failed start leaves no socket file
                remove_socket_file(done, socket_file_id(done))
            raise OSError(
                exc.errno,
                f"Failed to set up server socket listening on {endpoint}: {exc.strerror or exc}",
            ) from exc
    return bound


def bound_address(endpoint: Endpoint, listeners: list[trio.SocketListener]) -> Endpoint:
    """`endpoint` with the port the system chose for tcp://HOST:0."""
    if endpoint.scheme != "tcp" or endpoint.port or not listeners:
        return endpoint
    return dataclasses.replace(endpoint, port=listeners[0].socket.getsockname()[1])
