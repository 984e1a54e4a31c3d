"""What every long-running DataKit application shares: the metadata-store
address, a connection that survives the database restarting, a clean stop
on SIGTERM/SIGINT, and a Prometheus endpoint.

Built on :mod:`datakit.client` only (the bridges and the CI are clients like
any other). The client is blocking, so calls run in worker threads through
:meth:`Store.run`; everything else is trio.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from datakit.client import ABORT, AGAIN, Commit, Connection, DataKitError, connect

T = TypeVar("T")
log = logging.getLogger("datakit.bridges")

DEFAULT_PORT = 5640

# One registry for the application's own metrics (each app module defines its
# own on it); not datakit.metrics.REGISTRY, whose 9p-server series would read
# as zeros in an application.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)
STORE_CONNECTED = Gauge(
    "datakit_app_store_connected",
    "1 while the application holds a working connection to the metadata store.",
    registry=REGISTRY,
)
STORE_OUTAGES = Counter(
    "datakit_app_store_outages_total",
    "Times the connection to the metadata store was lost (and then retried).",
    registry=REGISTRY,
)

# What a dropped connection looks like from the client: OSError as documented,
# plus the 9p client's own end-of-stream error.
# The 9p client's ConnectionClosed is a ConnectionError, so an OSError.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError)


class StartupError(Exception):
    """What a service needs at start is not there (its metrics port is
    taken): one line and exit status 1, see :func:`run_service`."""


class AddressError(ValueError):
    """A metadata-store address that names nothing we can connect to."""


@dataclass(frozen=True)
class StoreAddress:
    """A parsed address: ``target`` is what :func:`datakit.client.connect` takes;
    ``text`` is what the user wrote (for messages)."""

    text: str
    target: str
    server: bool  # a 9p server (True) or a Git repository opened directly


def parse_store_address(text: str) -> StoreAddress:
    """Upstream's ``tcp:HOST:PORT`` / ``tcp:HOST`` (port 5640) / ``unix:PATH``
    and ours: ``tcp://HOST[:PORT]``, ``unix://PATH``, ``file://PATH`` (a Unix
    socket, as upstream's bridges read it), ``git://PATH`` (open that Git
    repository directly, no server) or a plain repository path."""
    t = text.strip()
    if not t:
        raise AddressError("empty metadata-store address")
    if t.startswith("tcp://"):
        _host_port(t[6:].rstrip("/"), text)  # checked here, not as a traceback in connect
        return StoreAddress(text, t, True)
    if t.startswith("unix://"):
        return StoreAddress(text, t, True)
    if t.startswith("file://"):
        return StoreAddress(text, "unix://" + _nonempty(t[7:], text), True)
    if t.startswith("git://"):
        return StoreAddress(text, _nonempty(t[6:], text), False)
    if "://" in t:
        raise AddressError(
            f"{text}: unknown scheme (use tcp:HOST:PORT, tcp://HOST[:PORT], unix://PATH, "
            "file://PATH, git://PATH or a repository path)"
        )
    if t.startswith("tcp:"):
        return StoreAddress(text, "tcp://" + _host_port(t[4:], text), True)
    if t.startswith("unix:"):
        return StoreAddress(text, "unix://" + _nonempty(t[5:], text), True)
    if not os.path.exists(t):
        # A mistyped server address ("datakit:5640") would otherwise become
        # a new repository in the working directory, silently.
        raise AddressError(
            f"{text}: no such repository (a server is tcp:HOST:PORT; "
            "git://PATH creates a repository)"
        )
    return StoreAddress(text, t, False)


def _nonempty(path: str, text: str) -> str:
    if not path:
        raise AddressError(f"{text}: no path given")
    return path


def _host_port(rest: str, text: str) -> str:
    """``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT`` → ``HOST:PORT``."""
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or (tail and not tail.startswith(":")):
            raise AddressError(f"{text}: use tcp:HOST:PORT")
        host, port = f"[{host}]", tail[1:] or str(DEFAULT_PORT)
    elif rest.count(":") > 1:  # a bare IPv6 address, no port
        host, port = f"[{rest}]", str(DEFAULT_PORT)
    else:
        host, _, port = rest.partition(":")
        port = port or str(DEFAULT_PORT)
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"{text}: use tcp:HOST:PORT (PORT 1-65535)")
    return f"{host}:{int(port)}"


def describe_connect_error(address: StoreAddress, exc: BaseException) -> str:
    """One line for a failed first connection."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if address.server:
        return f"cannot connect to the metadata store at {address.text}: {reason}"
    return f"cannot open the metadata repository {address.text}: {reason}"


class Store:
    """A connection to the metadata store that comes back after an outage.

    :meth:`run` calls ``fn(connection)`` in a worker thread; when it fails
    with a transport error, the connection is dropped, one warning is logged
    for the outage, and the call is retried on a new connection, with
    exponential back-off between attempts, until it succeeds (or the caller
    is cancelled). Errors that are not transport errors go to the caller.
    """

    def __init__(
        self,
        address: StoreAddress,
        *,
        initial_delay: float = 0.2,
        max_delay: float = 10.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.options = options or {}
        self._conn: Connection | None = None
        self._generation = 0  # bumped each time a connection is dropped
        self._lock = trio.Lock()
        self._down = False

    def _connect(self) -> Connection:
        return connect(self.address.target, **self.options)

    def connect_now(self) -> None:
        """The first connection, blocking: raise its error (the caller says
        it in one line and exits) rather than retrying."""
        self._conn = self._connect()
        STORE_CONNECTED.set(1)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        STORE_CONNECTED.set(0)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection: nothing to report
                log.debug("closing the store connection", exc_info=True)

    async def _connection(self) -> tuple[Connection, int]:
        async with self._lock:
            delay = self.initial_delay
            while self._conn is None:
                try:
                    self._conn = await trio.to_thread.run_sync(
                        self._connect, abandon_on_cancel=True
                    )
                except TRANSPORT_ERRORS as exc:
                    log.debug("metadata store still unreachable: %s", exc)
                    await trio.sleep(delay)
                    delay = min(delay * 2, self.max_delay)
                    continue
                STORE_CONNECTED.set(1)
                if self._down:
                    self._down = False
                    log.warning("reconnected to the metadata store at %s", self.address.text)
            return self._conn, self._generation

    def _lost(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation:
            return  # another task noticed this outage first
        self._generation += 1
        if not self._down:
            self._down = True
            STORE_OUTAGES.inc()
            log.warning(
                "lost the metadata store at %s (%s); reconnecting",
                self.address.text,
                exc or type(exc).__name__,
            )
        self.close()

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """``fn(conn)`` in a thread, retried on a new connection after a
        transport error (``fn`` must be safe to run again)."""
        while True:
            conn, generation = await self._connection()
            try:
                return await trio.to_thread.run_sync(fn, conn, abandon_on_cancel=True)
            except TRANSPORT_ERRORS as exc:
                self._lost(generation, exc)

    async def follow(self, branch: str, wake: Callable[[], object]) -> None:
        """Call ``wake()`` (in trio) at each new head of ``branch``, and after
        each reconnection (the wait sees the current head first); until
        cancelled. The wait blocks a worker thread; cancelling releases it."""
        cancel = threading.Event()

        def on_head(head: Commit | None) -> object:
            try:
                trio.from_thread.run_sync(wake)
            except trio.RunFinishedError:
                return ABORT
            return AGAIN

        def wait(conn: Connection) -> object:
            return conn.branch(branch).wait_for_head(on_head, cancel=cancel)

        try:
            while not cancel.is_set():
                try:
                    await self.run(wait)
                except (DataKitError, ValueError) as exc:  # not the transport: retried
                    log.warning("watching %s failed: %s; again in 1 s", branch, exc)
                    await trio.sleep(1)
        finally:
            cancel.set()


async def run_until_signalled(main: Callable[[], Awaitable[None]]) -> int:
    """Run ``main()`` until it returns or SIGTERM/SIGINT arrives; 0 either way.

    The signal cancels ``main`` (worker threads blocked in the client are
    abandoned: they hold no state that needs saving)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    log.info("%s received: stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            await main()
            nursery.cancel_scope.cancel()
    return 0


def parse_listen(text: str, flag: str = "--listen-prometheus") -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT``; HOST defaults to 0.0.0.0."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else ""
    if not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{flag} {text!r}: use PORT or HOST:PORT")
    return host or "0.0.0.0", int(port)


async def serve_prometheus(
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve :data:`REGISTRY` at ``http://HOST:PORT/metrics`` (with the
    server's own HTTP handler, :mod:`datakit.metrics_http`)."""
    from datakit.metrics_http import serve_metrics

    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        raise StartupError(f"--listen-prometheus {host}:{port}: {e.strerror or e}") from None
    sockname = listeners[0].socket.getsockname()
    await trio.lowlevel.checkpoint()
    bound = (str(sockname[0]), int(sockname[1]))
    announce(f"metrics at http://{bound[0]}:{bound[1]}/metrics")

    async def serve(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_metrics(listeners, registry=REGISTRY, task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        task_status.started(bound)


def announce(text: str) -> None:
    """Where the application listens: said at the default verbosity."""
    if log.isEnabledFor(logging.INFO):
        log.info("%s", text[:1].upper() + text[1:])
    elif log.isEnabledFor(logging.WARNING):
        print(f"datakit: {text}", file=sys.stderr, flush=True)


def run_service(prog: str, main: Callable[[], Awaitable[None]]) -> int:
    """:func:`run_until_signalled` under trio; a :class:`StartupError`
    (however deep in the service's task groups) is one line and exit 1."""
    failure: BaseException | None = None
    try:
        return trio.run(run_until_signalled, main)
    except* StartupError as group:
        failure = group
        while isinstance(failure, BaseExceptionGroup):
            failure = failure.exceptions[0]
    print(f"{prog}: {failure}", file=sys.stderr)
    return 1


def setup_logging(level: int) -> None:
    """Log lines with times, at ``level`` (see :func:`datakit.options.log_level`)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


__all__ = [
    "REGISTRY",
    "AddressError",
    "Store",
    "StoreAddress",
    "announce",
    "parse_listen",
    "parse_store_address",
    "run_until_signalled",
    "serve_prometheus",
    "setup_logging",
]
