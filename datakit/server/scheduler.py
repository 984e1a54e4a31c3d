"""Running the requests of one attached connection: tags, concurrency, flush.

Requests run in arrival order, inline in the read loop, except those that
may block: a read of a live file or a write to a command file runs in a task
of its own, so it never delays other requests multiplexed on the same
connection (the Linux client sends every process's I/O over one connection).
Later requests on the same fid wait for such a task (`ordering`), which lets
a client pipeline dependent requests.  At most `max_pending` such tasks run
at once; past that a request that would need one is refused at once (EAGAIN)
and the read loop keeps reading, so a Tflush always gets through.  `Tflush`
cancels the flushed task's cancel scope, so a blocked read really stops, and
its reply is never sent.
"""

from __future__ import annotations

import errno as E
from dataclasses import dataclass, field
from time import perf_counter

import trio

from datakit import metrics, ninep
from datakit.server import ops, ordering
from datakit.server.connection import Connection
from datakit.server.output import OutputQueue
from datakit.vfs import FsError

_ERRORS = frozenset((ninep.Rerror, ninep.Rlerror))
_SPECIAL = frozenset((ninep.Tflush,))  # never answered by `run_inline`


@dataclass
class _Request:
    """A request running in a task of its own."""

    tag: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    flushed: bool = False


class Scheduler:
    def __init__(self, conn: Connection, output: OutputQueue, max_pending: int) -> None:
        self.conn = conn
        self.output = output
        self.max_pending = max_pending
        self._pending: dict[int, _Request] = {}  # by tag
        self._running = 0  # tasks started and not yet out of the fids' ordering
        self._order = ordering.FidOrder()

    @property
    def pending(self) -> int:
        """How many requests run in tasks of their own."""
        return len(self._pending)

    async def submit(self, msg: ninep.Message, nursery: trio.Nursery) -> None:
        """Answer `msg`, or start a task in `nursery` that will."""
        if isinstance(msg, ninep.Tflush):
            self._flush(msg.oldtag)
            await self._send(ninep.Rflush(tag=msg.tag))
            return
        tag = msg.tag
        if tag in self._pending:
            await self._send(self.conn.error_reply(tag, FsError("Tag in use", E.EINVAL)))
            return
        if self.idle(msg):
            await self.run_inline(msg)
            return
        shared, owned = ordering.claims(msg)
        waits = self._order.pending(shared, owned)
        if not waits and not self._may_block(msg):
            await self.run_inline(msg)
            return
        if len(self._pending) >= self.max_pending:
            # Refuse rather than stop reading: a stalled read loop would
            # leave even the Tflush that frees a place unanswered.
            error = self.conn.error_reply(tag, self._too_many_waiting())
            await self.output.put(self.conn.encode(error), defer=True)
            return
        # Answered requests waiting to queue their reply no longer count
        # as pending: stop taking new work while the client does not read.
        await self.output.wait_for_room()
        req = _Request(tag)
        self._pending[tag] = req
        self._order.enter(shared, owned, req.done)
        self._running += 1
        nursery.start_soon(self._run_request, msg, req, waits, shared + owned)

    def reset(self) -> None:
        """Forget the fids' ordering (a new version clunks every fid)."""
        self._order.clear()

    async def _send(self, msg: ninep.Message) -> None:
        await self.output.put(self.conn.encode(msg))

    def _flush(self, oldtag: int) -> None:
        req = self._pending.get(oldtag)
        if req is not None:
            req.flushed = True
            req.scope.cancel()

    def _too_many_waiting(self) -> FsError:
        return FsError(
            f"Too many outstanding requests that wait ({self.max_pending}) "
            "on this connection; flush some or try again later",
            E.EAGAIN,
        )

    def _may_block(self, msg: ninep.Message) -> bool:
        """Whether a request can wait on something else than the CPU."""
        if not isinstance(msg, ninep.Tread | ninep.Twrite):
            return False  # directory operations never wait (see vfs.Directory)
        entry = self.conn.fids.peek(msg.fid)
        return entry is not None and entry.handle is not None and entry.handle.may_block

    def idle(self, msg: ninep.Message) -> bool:
        """Whether `msg` can be answered at once with nothing else to check:
        no request runs in a task (so none can be in its way), it is no flush
        and it cannot block. The lone request of a client that waits for each
        reply, as the kernel's does for each process."""
        return not self._running and type(msg) not in _SPECIAL and not self._may_block(msg)

    async def run_inline(self, msg: ninep.Message) -> None:
        """Answer `msg` here and now (see `idle`)."""
        start = perf_counter()
        reply = await ops.handle(self.conn, msg)
        outcome = "error" if type(reply) in _ERRORS else "ok"
        metrics.count_request(type(msg), outcome, perf_counter() - start)
        await self.output.put(self.conn.encode(reply), defer=True)

    async def _run_request(
        self, msg: ninep.Message, req: _Request, waits: list[trio.Event], fids: tuple[int, ...]
    ) -> None:
        start = perf_counter()
        outcome = "ok"
        try:
            with req.scope:
                for earlier in waits:  # requests on the same fids that arrived first
                    await earlier.wait()
                reply = await ops.handle(self.conn, msg)
                if isinstance(reply, ninep.Rerror | ninep.Rlerror):
                    outcome = "error"
            if req.flushed:
                outcome = "flushed"
                return
            data = self.conn.encode(reply)
            # Drop the tag and free the place before the reply leaves: the
            # client may reuse the tag, or send another waiting request, at once.
            # Queueing is synchronous unless the output is over its bound.
            self._finish(req)
            await self.output.put(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._finish(req)
            req.done.set()
            self._order.leave(fids)
            self._running -= 1
            metrics.count_request(type(msg), outcome, perf_counter() - start)

    def _finish(self, req: _Request) -> None:
        # By identity: once answered, its tag may already name a newer request.
        if self._pending.get(req.tag) is req:
            del self._pending[req.tag]
