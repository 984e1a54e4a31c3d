"""``--listen-git``: the Git protocol (``git://``) on the live store.

Each connection is served in a worker thread of its own, on a blocking
socket with a timeout: dulwich's server code is synchronous, and walking a
history and compressing a pack is CPU work that must not run on the event
loop serving 9p. The event loop only accepts connections and owns their
lifetime: on shutdown it shuts the socket down under the thread, which then
ends at its next read or write.

Bounds: at most ``max_connections`` at once (more are closed at once, as
for 9p); a client silent for ``timeout`` seconds mid-request is
disconnected; a pkt-line is at most 64 KiB and packs are written as they
are read (see :mod:`.pack`), so memory does not grow with what a client
sends or asks for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from dulwich.errors import GitProtocolError, HangupException
from dulwich.protocol import ReceivableProtocol, pkt_line

from datakit import metrics
from datakit.server.accept import serve_bounded
from datakit.store import Store

from .pack import MissingObject
from .repo import StoreRepo
from .walk import Corrupt

log = logging.getLogger("datakit.git")
# dulwich logs every request's capabilities at info: -v would be all that.
logging.getLogger("dulwich.server").setLevel(logging.WARNING)

DEFAULT_PORT = 9418
DEFAULT_TIMEOUT = 60.0  # seconds a client may stay silent mid-request
DEFAULT_MAX_CONNECTIONS = 16
MAX_REQUEST = 4096  # bytes of the first pkt-line (service, path, host, version)

UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"


class BadRequest(Exception):
    """The connection's first pkt-line is not a Git daemon request."""


@dataclass(frozen=True, slots=True)
class Request:
    """``git-upload-pack /path\\0host=HOST\\0\\0version=2\\0`` (git's
    pack-protocol.txt, "git-proto-request")."""

    service: str
    path: str
    host: str | None = None
    extra: tuple[str, ...] = ()

    @property
    def version(self) -> int:
        for param in self.extra:
            if param.startswith("version="):
                value = param[len("version=") :]
                return int(value) if value in ("0", "1", "2") else 0
        return 0


def parse_request(line: bytes) -> Request:
    command, space, rest = line.partition(b" ")
    if not space or not rest.endswith(b"\0"):
        raise BadRequest("expected `git-upload-pack PATH\\0host=HOST\\0`")
    service = command.decode("ascii", "replace")
    fields = rest[:-1].split(b"\0")
    path = fields[0].decode("utf-8", "replace")
    host = None
    extra: tuple[str, ...] = ()
    if len(fields) > 1 and fields[1].startswith(b"host="):
        host = fields[1][len(b"host=") :].decode("utf-8", "replace")
    if len(fields) > 2 and fields[2] == b"":
        extra = tuple(f.decode("utf-8", "replace") for f in fields[3:] if f)
    return Request(service, path, host, extra)


class Connection:
    """One client's socket, seen from its worker thread: blocking reads and
    writes with a timeout, counted in the metrics.

    Writes are gathered up to WRITE_BUFFER bytes and sent before every read
    (the client answers only what it has received) and at the end: the
    protocol's many small pkt-lines would otherwise be a send(2) each."""

    WRITE_BUFFER = 256 << 10

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        sock.settimeout(timeout)
        self._out = bytearray()

    def recv(self, size: int) -> bytes:
        self.flush()
        data = self.sock.recv(size)
        metrics.GIT_BYTES_RECEIVED.inc(len(data))
        return data

    def write(self, data: bytes) -> None:
        self._out += data
        if len(self._out) >= self.WRITE_BUFFER:
            self.flush()

    def flush(self) -> None:
        if self._out:
            self.sock.sendall(self._out)
            metrics.GIT_BYTES_SENT.inc(len(self._out))
            self._out.clear()

    def protocol(self) -> ReceivableProtocol:
        return ReceivableProtocol(self.recv, self.write)


@dataclass
class GitContext:
    """What a request's handler may use besides its connection."""

    store: Store
    # ``await write(store.set_head, ...)`` on the event loop: the writer 9p
    # commits go through (datakit.fs.writes.StoreWriter), so a push is
    # serialised with them and its branch changes are announced the same way.
    write: Callable[..., Any]
    push: str | None  # None: refused; "ff": fast-forwards; "force": anything
    max_pack: int  # bytes a push may send
    max_object: int  # bytes of one object in a push


class GitServer:
    def __init__(
        self,
        context: GitContext,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.max_connections = max_connections
        # Threads of their own: a busy Git endpoint never takes the worker
        # threads 9p commits wait on (trio's default limiter).
        self._threads = trio.CapacityLimiter(max_connections)

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await serve_bounded(
            self._handle,
            listeners,
            max_connections=self.max_connections,
            what="Git connections open (--max-git-connections)",
            task_status=task_status,
        )

    async def _handle(self, stream: trio.SocketStream) -> None:
        sock = socket.socket(fileno=os.dup(stream.socket.fileno()))
        metrics.GIT_CONNECTIONS.inc()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_shut_down_when_cancelled, sock)
                await trio.to_thread.run_sync(self.serve_connection, sock, limiter=self._threads)
                nursery.cancel_scope.cancel()
        finally:
            metrics.GIT_CONNECTIONS.dec()
            sock.close()

    def serve_connection(self, sock: socket.socket) -> None:
        """Serve one connection (in its worker thread); never raises."""
        conn = Connection(sock, self.timeout)
        proto = conn.protocol()
        service = "unknown"
        try:
            line = proto.read_pkt_line()
            if line is None or len(line) > MAX_REQUEST:
                raise BadRequest("expected a git-upload-pack or git-receive-pack request")
            request = parse_request(line)
            service = request.service
            outcome_service = self._dispatch(request, conn, proto)
            conn.flush()
            metrics.GIT_REQUESTS.labels(outcome_service, "ok").inc()
        except Refused as exc:
            log.info("git %s refused: %s", service, exc)
            metrics.GIT_REQUESTS.labels(_label(service), "refused").inc()
            if isinstance(exc, PushRefused):
                conn.flush()
            else:
                _send_error(conn, str(exc))
        except Exception as exc:
            metrics.GIT_REQUESTS.labels(_label(service), "error").inc()
            self._failed(service, conn, exc)

    def _failed(self, service: str, conn: Connection, exc: Exception) -> None:
        """Log why a request failed and tell the client when it can hear."""
        if _caused_by(exc, TimeoutError):
            # dulwich turns a socket error into GitProtocolError: the cause says.
            log.info("git %s: client silent for %g s; disconnected", service, self.timeout)
            _send_error(conn, f"timed out: nothing received for {self.timeout:g} s")
        elif isinstance(exc, HangupException) or _caused_by(exc, OSError):
            # Reset by the peer, or shut down by us (the server stopping).
            log.info("git %s: connection lost: %s", service, exc)
        elif isinstance(exc, BadRequest | GitProtocolError | MissingObject | Corrupt | ValueError):
            log.info("git %s: %s", service, exc)
            _send_error(conn, str(exc) or type(exc).__name__)
        else:  # a bug costs this connection, never the server
            log.error("git %s: internal error", service, exc_info=exc)
            _send_error(conn, "internal error (see the server's log)")

    def _dispatch(self, request: Request, conn: Connection, proto: ReceivableProtocol) -> str:
        """Run the request; the service label its success counts under."""
        if request.service == UPLOAD_PACK:
            if request.version == 2:
                from .v2 import serve_v2

                return serve_v2(proto, self.context)
            # v0; a client asking for v1 accepts a v0 answer.
            from .upload import UploadPack

            handler = UploadPack(StoreRepo(self.context.store), proto)
            handler.handle()
            if not handler.wanted:
                return "ls-remote"
            return "fetch" if handler.common else "clone"
        if request.service == RECEIVE_PACK:
            if self.context.push is None:
                raise Refused(
                    "pushing is not enabled on this DataKit server "
                    "(start `datakit serve` with --git-push to allow it)"
                )
            from .receive import serve_receive_pack

            if not serve_receive_pack(proto, self.context):
                raise PushRefused("a ref or the pack was refused (the client was told which)")
            return "push"
        raise BadRequest(f"unknown service {request.service!r}")


class Refused(Exception):
    """A request the server's configuration does not allow."""


class PushRefused(Refused):
    """A push whose refs or pack were refused: already reported to the
    client in its own terms, so nothing more is sent."""


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, kind):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _label(service: str) -> str:
    return {UPLOAD_PACK: "fetch", RECEIVE_PACK: "push"}.get(service, "unknown")


def _send_error(conn: Connection, message: str) -> None:
    """``ERR message``: git prints "remote error: message" and stops."""
    text = "".join(c if c.isprintable() else "?" for c in message)[:1000]
    with contextlib.suppress(OSError):
        conn.write(pkt_line(b"ERR " + text.encode("utf-8", "replace")))
        conn.flush()


async def _shut_down_when_cancelled(sock: socket.socket) -> None:
    try:
        await trio.sleep_forever()
    finally:
        # Wakes the worker thread blocked in recv or send: it ends there.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
