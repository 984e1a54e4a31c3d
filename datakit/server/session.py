"""One 9p connection: reading requests, the handshake, and closing down.

The session does the I/O; what it decides with lives in smaller pieces:
the version negotiation and the connection's state
(`datakit.ninep.handshake`, sans-I/O), what the handlers see of the
connection (`connection`), the running of requests once the client attached
(`scheduler`: tags, concurrency, flush, the pending bound) and the bounded
queue of replies (`output`).
"""

from __future__ import annotations

import errno as E
import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from datakit import metrics, ninep
from datakit.ninep.handshake import ServerHandshake, State
from datakit.server import ops
from datakit.server.connection import Connection
from datakit.server.output import MAX_QUEUED_BYTES, OutputQueue
from datakit.server.scheduler import Scheduler
from datakit.server.transport import transport_for
from datakit.vfs import Directory, FsError

log = logging.getLogger("datakit.server")

MAX_MSIZE = 1024 * 1024


@dataclass
class Limits:
    max_msize: int = MAX_MSIZE
    max_fids: int = 65536
    max_pending: int = 1024
    max_queued_bytes: int = MAX_QUEUED_BYTES  # of replies a client has not read yet
    # A connection must have sent Tversion and Tattach within this many
    # seconds: connections are bounded (--max-connections), so ones that never
    # start a session would otherwise hold their slots against real clients.
    # Once attached, a client may stay idle as long as it likes (a mount does).
    handshake_timeout: float = 30.0


class Session:
    def __init__(
        self,
        stream: trio.abc.Stream,
        make_root: Callable[[], Directory],
        limits: Limits | None = None,
        *,
        read_only: bool = False,
        read_only_reason: str | None = None,
    ) -> None:
        self.transport = transport_for(stream)
        self.limits = limits or Limits()
        self.decoder = ninep.Decoder()
        self.handshake = ServerHandshake(self.decoder, self.limits.max_msize)
        self.conn = Connection(
            self.handshake,
            make_root,
            max_fids=self.limits.max_fids,
            read_only=read_only,
            read_only_reason=read_only_reason,
        )
        self.output = OutputQueue(self.transport, self.limits.max_queued_bytes)
        self.scheduler = Scheduler(self.conn, self.output, self.limits.max_pending)

    @property
    def state(self) -> State:
        return self.handshake.state

    async def send(self, msg: ninep.Message) -> None:
        await self.output.put(self.conn.encode(msg))

    async def run(self) -> None:
        metrics.CONNECTIONS.inc()
        metrics.CONNECTIONS_TOTAL.inc()
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await self._read_loop(nursery)
                    with trio.move_on_after(5):
                        await self.output.drain()
                except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                    pass  # the client went away; inside the nursery so it is not grouped
                finally:
                    nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            self.handshake.close()
            self.conn.close()
            # Last, so a scrape that sees the connection gone also sees its state gone.
            metrics.CONNECTIONS.dec()
            with trio.CancelScope(shield=True):
                await self.transport.aclose()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        deadline = trio.current_time() + self.limits.handshake_timeout
        # Locals: each is used once or twice a request.
        handshake, decoder, output = self.handshake, self.decoder, self.output
        transport, scheduler = self.transport, self.scheduler
        while handshake.state is not State.CLOSING:
            try:
                msg = decoder.next_message()
            except ninep.MessageTooLarge as exc:
                # The size field is nonsense, so whatever follows it is no tag.
                metrics.PROTOCOL_ERRORS.inc()
                await self._fatal(ninep.NOTAG, str(exc))
            except ninep.ProtocolError as exc:
                metrics.PROTOCOL_ERRORS.inc()
                if exc.tag is None or handshake.state is not State.READY:
                    await self._fatal(ninep.NOTAG if exc.tag is None else exc.tag, str(exc))
                else:  # the frame was consumed whole; answer it and keep the session
                    await self.send(self.conn.error_reply(exc.tag, FsError(str(exc), E.EPROTO)))
            else:
                if msg is None:
                    if handshake.state is State.READY:  # the common case, inline
                        await output.send_queued()  # the replies of all received so far
                        self._take(await transport.receive(self._receive_size()))
                    else:
                        await self._receive(deadline)
                elif handshake.state is State.READY:
                    if scheduler.idle(msg):  # the lone request: answered here
                        await scheduler.run_inline(msg)
                    else:
                        await scheduler.submit(msg, nursery)
                    if transport.due():
                        await trio.lowlevel.checkpoint()
                else:
                    await self._handshake(msg)

    async def _receive(self, deadline: float) -> None:
        """Before the client attached: read more bytes, up to `deadline`."""
        await self.output.send_queued()
        with trio.move_on_at(deadline):
            self._take(await self.transport.receive(self._receive_size()))
            # The receive does not wait (nor notice the deadline) while
            # bytes keep coming: a client that floods without attaching
            # must still run out of time.
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        log.info(
            "closing a connection that did not attach within %g s",
            self.limits.handshake_timeout,
        )
        self.handshake.close()

    def _receive_size(self) -> int:
        return max(65536, self.conn.msize + 4096)

    def _take(self, data: bytes) -> None:
        if data:
            self.decoder.feed(data)
        else:  # the client closed its side
            self.handshake.close()

    async def _handshake(self, msg: ninep.Message) -> None:
        """Before the first attach: Tversion (again), then Tattach."""
        if isinstance(msg, ninep.Tversion):
            await self._version(msg)
        elif self.state is State.AWAITING_VERSION:
            await self._fatal(msg.tag, "Expected Version message")
        elif isinstance(msg, ninep.Tauth) and self.conn.dialect is ninep.Dialect.L:
            # No authentication: say so and let the client attach (diod's
            # clients always try Tauth first). Upstream closed here.
            error = FsError("Authentication not required", E.ENOENT)
            await self.send(self.conn.error_reply(msg.tag, error))
        elif isinstance(msg, ninep.Tattach):
            reply = await ops.handle(self.conn, msg)
            if self.conn.fids.count:
                self.handshake.attached()
            await self.send(reply)
        else:
            await self._fatal(msg.tag, "Expected Attach message")

    async def _version(self, msg: ninep.Tversion) -> None:
        reply = self.handshake.version(msg)
        if self.state is State.AWAITING_ATTACH:
            # A new version aborts everything of the previous session (9P semantics).
            self.conn.clunk_all()
            self.scheduler.reset()
        await self.send(reply)

    async def _fatal(self, tag: int, message: str) -> None:
        log.info("closing 9p connection: %s", message)
        self.handshake.close()
        with trio.move_on_after(1):
            await self.send(self.conn.error_reply(tag, FsError(message, E.EPROTO)))
