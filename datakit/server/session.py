"""One 9p connection: handshake, concurrent requests, flush, and the fid table.

Requests run in arrival order, inline in the read loop, except those that may
block: a read of a live file or a write to a command file runs in a task of
its own, so it never delays other requests multiplexed on the same connection
(the Linux client sends every process's I/O over one connection).  Later
requests on the same fid wait for such a task (`ordering`), which lets a
client pipeline dependent requests.  At most `Limits.max_pending` such tasks
run at once; past that a request that would need one is refused at once
(EAGAIN) and the read loop keeps reading, so a Tflush always gets through.
Replies are queued whole and written in
as few syscalls as possible.  `Tflush` cancels the flushed task's cancel
scope, so a blocked read really stops, and its reply is never sent.
"""

from __future__ import annotations

import errno as E
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from datakit import metrics, ninep
from datakit.server import ops, ordering, replies
from datakit.server.fids import FidTable
from datakit.vfs import Directory, FsError

log = logging.getLogger("datakit.server")

MAX_MSIZE = 1024 * 1024
MIN_MSIZE = 256
MAX_QUEUED_BYTES = 8 * 1024 * 1024


@dataclass
class Limits:
    max_msize: int = MAX_MSIZE
    max_fids: int = 65536
    max_pending: int = 1024
    # A connection must have sent Tversion and Tattach within this many
    # seconds: connections are bounded (--max-connections), so ones that never
    # start a session would otherwise hold their slots against real clients.
    # Once attached, a client may stay idle as long as it likes (a mount does).
    handshake_timeout: float = 30.0


@dataclass
class _Request:
    tag: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    flushed: bool = False


class Session:
    def __init__(
        self,
        stream: trio.abc.Stream,
        make_root: Callable[[], Directory],
        limits: Limits | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.stream = stream
        self.make_root = make_root
        self.limits = limits or Limits()
        self.read_only = read_only
        self.dialect = ninep.Dialect.V2000
        self.msize = 8192
        self.decoder = ninep.Decoder(dialect=self.dialect, max_size=self.limits.max_msize)
        self.fids = FidTable(self.limits.max_fids)
        self.root: Directory | None = None
        # Replies are queued whole; whichever task finds nobody writing sends
        # everything queued in one syscall, so pipelined requests turn into a
        # few large writes rather than thousands of small ones.
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._writing = False
        self._out_drained = trio.Event()
        self._writer_error: BaseException | None = None
        self._pending: dict[int, _Request] = {}
        self._order = ordering.FidOrder()
        self._closed = False

    # -- replies -----------------------------------------------------------

    def error_reply(self, tag: int, err: FsError) -> ninep.Message:
        return replies.error_reply(tag, err, self.dialect, self.msize)

    def encode(self, reply: ninep.Message) -> bytes:
        """Never raises: a reply that cannot be sent becomes an error for its tag."""
        return replies.encode_reply(reply, self.dialect, self.msize)

    async def send(self, msg: ninep.Message) -> None:
        await self._queue(self.encode(msg))

    async def _reply_error(self, tag: int, err: FsError) -> None:
        await self._queue(self.encode(self.error_reply(tag, err)), defer=True)

    async def _queue(self, data: bytes, *, defer: bool = False) -> None:
        """Queue a reply; unless `defer`, also write out everything queued.

        The read loop defers: it answers every request already received
        before it writes, so a pipelined burst gets one write back."""
        await self._wait_for_room()
        self._out.append(data)
        self._out_bytes += len(data)
        if not (defer or self._writing):  # else the task writing sends this too
            await self._write_out()

    async def _wait_for_room(self) -> None:
        """Bound what a client that does not read its replies makes us hold."""
        while self._out_bytes > MAX_QUEUED_BYTES:
            if self._writer_error is not None:
                raise trio.BrokenResourceError from self._writer_error
            if self._writing:
                await self._out_drained.wait()
            else:
                await self._write_out()

    async def _write_out(self) -> None:
        # The caller becomes the writer: no hop through a writer task for the
        # common case of one reply at a time.
        self._writing = True
        try:
            # Let the other requests that are ready now run first, so their
            # replies leave in this same write (pipelined clients send many).
            await trio.lowlevel.cancel_shielded_checkpoint()
            while self._out:
                out, self._out = self._out, []
                self._out_bytes = 0
                await self.stream.send_all(out[0] if len(out) == 1 else b"".join(out))
                drained, self._out_drained = self._out_drained, trio.Event()
                drained.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._writer_error = exc
            self._out_drained.set()
            raise
        finally:
            self._writing = False

    async def _flush_output(self) -> None:
        """Wait until everything queued has been written (before closing)."""
        while (self._out or self._writing) and self._writer_error is None:
            if self._writing:
                await self._out_drained.wait()
            else:
                await self._write_out()

    # -- main loop -----------------------------------------------------------

    async def run(self) -> None:
        metrics.CONNECTIONS.inc()
        metrics.CONNECTIONS_TOTAL.inc()
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await self._read_loop(nursery)
                    with trio.move_on_after(5):
                        await self._flush_output()
                except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                    pass  # the client went away; inside the nursery so it is not grouped
                finally:
                    nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            self._closed = True
            metrics.FIDS.dec(self.fids.clear())
            if self.root is not None:
                self.root.detach()
            # Last, so a scrape that sees the connection gone also sees its state gone.
            metrics.CONNECTIONS.dec()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        handshake = 0  # 0: expect Tversion, 1: expect Tattach, 2: running
        handshake_deadline = trio.current_time() + self.limits.handshake_timeout
        while True:
            try:
                msg = self.decoder.next_message()
            except ninep.MessageTooLarge as exc:
                # The size field is nonsense, so whatever follows it is no tag.
                metrics.PROTOCOL_ERRORS.inc()
                await self._fatal(ninep.NOTAG, str(exc))
                return
            except ninep.ProtocolError as exc:
                metrics.PROTOCOL_ERRORS.inc()
                if exc.tag is None or handshake < 2:
                    await self._fatal(ninep.NOTAG if exc.tag is None else exc.tag, str(exc))
                    return
                # The frame was consumed whole; answer it and keep the session.
                await self.send(self.error_reply(exc.tag, FsError(str(exc), E.EPROTO)))
                continue
            if msg is None:
                if self._out and not self._writing:
                    await self._write_out()  # the replies of everything received so far
                with trio.move_on_at(handshake_deadline if handshake < 2 else math.inf):
                    data = await self.stream.receive_some(max(65536, self.msize + 4096))
                    if not data:
                        return
                if handshake < 2 and trio.current_time() >= handshake_deadline:
                    log.info(
                        "closing a connection that did not attach within %g s",
                        self.limits.handshake_timeout,
                    )
                    return
                self.decoder.feed(data)
                continue
            if handshake == 0:
                if not isinstance(msg, ninep.Tversion):
                    await self._fatal(msg.tag, "Expected Version message")  # type: ignore[attr-defined]
                    return
                if not await self._version(msg):
                    return
                handshake = 1
            elif handshake == 1:
                if isinstance(msg, ninep.Tversion):
                    if not await self._version(msg):
                        return
                    continue
                if isinstance(msg, ninep.Tauth) and self.dialect is ninep.Dialect.L:
                    # No authentication: say so and let the client attach (diod's
                    # clients always try Tauth first). Upstream closed here.
                    await self.send(
                        self.error_reply(msg.tag, FsError("Authentication not required", E.ENOENT))
                    )
                    continue
                if not isinstance(msg, ninep.Tattach):
                    await self._fatal(msg.tag, "Expected Attach message")  # type: ignore[attr-defined]
                    return
                await self._dispatch(msg)
                if self.fids.count:
                    handshake = 2
            elif isinstance(msg, ninep.Tflush):
                self._flush(msg.oldtag)
                await self.send(ninep.Rflush(tag=msg.tag))
            else:
                tag = msg.tag  # type: ignore[attr-defined]
                if tag in self._pending:
                    await self.send(self.error_reply(tag, FsError("Tag in use", E.EINVAL)))
                    continue
                shared, owned = ordering.claims(msg)
                waits = self._order.pending(shared, owned)
                if not waits and not self._may_block(msg):
                    await self._run_inline(msg)
                    continue
                if len(self._pending) >= self.limits.max_pending:
                    # Refuse rather than stop reading: a stalled read loop would
                    # leave even the Tflush that frees a place unanswered.
                    await self._reply_error(tag, self._too_many_waiting())
                    continue
                # Answered requests waiting to queue their reply no longer count
                # as pending: stop taking new work while the client does not read.
                await self._wait_for_room()
                req = _Request(tag)
                self._pending[tag] = req
                self._order.enter(shared, owned, req.done)
                nursery.start_soon(self._run_request, msg, req, waits, shared + owned)

    async def _fatal(self, tag: int, message: str) -> None:
        log.info("closing 9p connection: %s", message)
        with trio.move_on_after(1):
            await self.send(self.error_reply(tag, FsError(message, E.EPROTO)))

    async def _version(self, msg: ninep.Tversion) -> bool:
        version = msg.version
        if version == "9P2000.u":
            dialect = ninep.Dialect.U
        elif version == "9P2000.L":
            dialect = ninep.Dialect.L
        elif version.startswith("9P"):
            dialect = ninep.Dialect.V2000
        else:
            await self.send(ninep.Rversion(tag=msg.tag, msize=msg.msize, version="unknown"))
            return False
        self.msize = max(MIN_MSIZE, min(msg.msize, self.limits.max_msize))
        # A new version aborts everything of the previous session (9P semantics).
        metrics.FIDS.dec(self.fids.clear())
        self._order.clear()
        self.dialect = dialect
        self.decoder.dialect = dialect
        self.decoder.max_size = self.msize
        await self.send(ninep.Rversion(tag=msg.tag, msize=self.msize, version=dialect.value))
        return True

    def _flush(self, oldtag: int) -> None:
        req = self._pending.get(oldtag)
        if req is not None:
            req.flushed = True
            req.scope.cancel()

    def _too_many_waiting(self) -> FsError:
        return FsError(
            f"Too many outstanding requests that wait ({self.limits.max_pending}) "
            "on this connection; flush some or try again later",
            E.EAGAIN,
        )

    def _may_block(self, msg: object) -> bool:
        """Whether a request can wait on something else than the CPU."""
        if not isinstance(msg, ninep.Tread | ninep.Twrite):
            return False  # directory operations never wait (see vfs.Directory)
        entry = self.fids.peek(msg.fid)
        return entry is not None and entry.handle is not None and entry.handle.may_block

    async def _run_inline(self, msg: object) -> None:
        start = time.perf_counter()
        reply = await self._dispatch_reply(msg)
        outcome = "error" if isinstance(reply, ninep.Rerror | ninep.Rlerror) else "ok"
        metrics.count_request(type(msg), outcome, time.perf_counter() - start)
        await self._queue(self.encode(reply), defer=True)

    async def _run_request(
        self, msg: object, req: _Request, waits: list[trio.Event], fids: tuple[int, ...]
    ) -> None:
        start = time.perf_counter()
        outcome = "ok"
        try:
            with req.scope:
                for earlier in waits:  # requests on the same fids that arrived first
                    await earlier.wait()
                reply = await self._dispatch_reply(msg)
                if isinstance(reply, ninep.Rerror | ninep.Rlerror):
                    outcome = "error"
            if req.flushed:
                outcome = "flushed"
                return
            data = self.encode(reply)
            # Drop the tag and free the place before the reply leaves: the
            # client may reuse the tag, or send another waiting request, at once.
            # Queueing is synchronous unless the output is over its bound.
            self._finish(req)
            await self._queue(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._finish(req)
            req.done.set()
            self._order.leave(fids)
            metrics.count_request(type(msg), outcome, time.perf_counter() - start)

    def _finish(self, req: _Request) -> None:
        # By identity: once answered, its tag may already name a newer request.
        if self._pending.get(req.tag) is req:
            del self._pending[req.tag]

    async def _dispatch(self, msg: object) -> None:
        await self.send(await self._dispatch_reply(msg))

    async def _dispatch_reply(self, msg: object) -> ninep.Message:
        handler = ops.HANDLERS.get(type(msg))
        tag: int = msg.tag  # type: ignore[attr-defined]
        if handler is None:
            return self.error_reply(tag, FsError("Function not implemented", E.ENOSYS))
        try:
            return await handler(self, msg)  # type: ignore[return-value]
        except FsError as err:
            return self.error_reply(tag, err)
        except ninep.EncodeError:  # e.g. a stat record inside a directory read
            log.exception("cannot encode part of the %s reply", type(msg).__name__)
            return self.error_reply(tag, FsError("Reply cannot be encoded", E.EIO))
        except Exception as exc:  # a bug must cost one request, never the session
            log.exception("internal error handling %s", type(msg).__name__)
            return self.error_reply(tag, FsError(f"Internal error: {exc!r}", E.EIO))

    def get_root(self) -> Directory:
        if self.root is None:
            self.root = self.make_root()
        return self.root
