"""The replies of one connection on their way out: batched, bounded.

Replies are queued whole; whichever task finds nobody writing becomes the
writer and sends everything queued in one syscall, so pipelined requests
turn into a few large writes rather than thousands of small ones, and the
common case of one reply at a time needs no hop through a writer task.
A client that does not read its replies makes us hold at most `max_bytes`
of them: past that, whoever queues waits (back-pressure, not failure). A
reply that is a view of a cached blob counts as the whole blob (`_held`).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from datakit.server.transport import Buffer, Transport

#: Reply bytes held for a client that does not read before queueing waits.
MAX_QUEUED_BYTES = 8 * 1024 * 1024


class OutputQueue:
    def __init__(self, transport: Transport, max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.transport = transport
        self.max_bytes = max_bytes
        self._out: list[Buffer] = []
        self._out_bytes = 0
        self._writing = False
        # Set and dropped whenever a write completes; made only when someone waits.
        self._drained: trio.Event | None = None
        self._writer_error: BaseException | None = None

    @property
    def queued(self) -> int:
        """Bytes of replies queued and not yet handed to the stream."""
        return self._out_bytes

    async def put(self, parts: Sequence[Buffer], *, defer: bool = False) -> None:
        """Queue a reply (its parts, in order); unless `defer`, also write
        out everything queued.

        The read loop defers: it answers every request already received
        before it writes (`send_queued`), so a pipelined burst gets one
        write back."""
        if self._out_bytes > self.max_bytes:
            await self.wait_for_room()
        out = self._out
        for part in parts:  # (a loop: cheaper than extend + sum for one or two)
            out.append(part)
            self._out_bytes += len(part) if type(part) is not memoryview else _held(part)
        if not (defer or self._writing):  # else the task writing sends this too
            await self._write_out(gather=True)

    async def send_queued(self) -> None:
        """Write what deferred `put`s left, unless a writer is at it already.

        No waiting for other replies first: the read loop calls this once
        it has answered everything received, and a lone request's reply
        should leave at once."""
        if self._out and not self._writing:
            await self._write_out(gather=False)

    async def wait_for_room(self) -> None:
        """Wait until the queue is within its bound (writing it out if nobody is)."""
        while self._out_bytes > self.max_bytes:
            if self._writer_error is not None:
                raise trio.BrokenResourceError from self._writer_error
            if self._writing:
                await self._wait_drained()
            else:
                await self._write_out(gather=False)

    async def _wait_drained(self) -> None:
        if self._drained is None:
            self._drained = trio.Event()
        await self._drained.wait()

    async def drain(self) -> None:
        """Wait until everything queued has been written (before closing)."""
        while (self._out or self._writing) and self._writer_error is None:
            if self._writing:
                await self._wait_drained()
            else:
                await self._write_out()

    async def _write_out(self, *, gather: bool = True) -> None:
        self._writing = True
        try:
            if gather:
                # Let the other requests that are ready now run first, so
                # their replies leave in this same write (requests answered
                # in tasks of their own finish together).
                await trio.lowlevel.cancel_shielded_checkpoint()
            while self._out:
                out, self._out = self._out, []
                self._out_bytes = 0
                await self.transport.send(out)
                self._wake_waiters()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._writer_error = exc
            self._wake_waiters()
            raise
        finally:
            self._writing = False

    def _wake_waiters(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None


def _held(view: memoryview) -> int:
    """The memory a queued view keeps alive: all of what it is a view of (a
    64 KiB reply read from a 4 MiB cached blob holds the 4 MiB, even once
    the cache dropped it), so the bound is on memory, not on bytes to send."""
    whole = view.obj
    return max(view.nbytes, len(whole) if isinstance(whole, bytes | bytearray) else 0)
