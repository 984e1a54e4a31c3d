"""The bytes of one connection: receiving requests, sending replies.

A 9p client that is not pipelining (the Linux kernel's, for one process)
sends a request and waits for its reply, so each request's latency is what
the user feels. Trio's socket streams make every receive and send a
scheduling round (a checkpoint, an `epoll_wait`) even when the data is
already there; for a lone request that is three rounds around the event
loop on top of the work itself.

`SocketTransport` therefore tries each `read`/`writev` on the non-blocking
socket first and only waits in trio when the kernel says it would block.
To stay fair to the other connections and tasks, a connection yields to the
event loop after `YIELD_EVERY` reads, writes or requests handled without
waiting (`due`: a pipelining client whose requests are always there
cannot starve the rest), which is also where a cancellation reaches it.
Replies go out with `writev`, so the parts of a reply need not be joined.

`StreamTransport` serves any other trio stream (tests use memory streams).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Protocol

import trio

#: Reads, writes and requests handled without waiting before we yield anyway.
YIELD_EVERY = 32
_IOV_MAX = 1024  # Linux's limit on the buffers of one writev

Buffer = bytes | bytearray | memoryview


class Transport(Protocol):
    async def receive(self, max_bytes: int) -> bytes:
        """At least one byte, or b"" once the client closed its side."""
        ...

    async def send(self, buffers: Sequence[Buffer]) -> None:
        """Write every buffer, in order (raises trio.BrokenResourceError)."""
        ...

    def due(self) -> bool:
        """Count one piece of work done without waiting (a request handled
        inline); True every `YIELD_EVERY` of them: time to yield."""
        ...

    async def aclose(self) -> None: ...


def transport_for(stream: trio.abc.Stream) -> Transport:
    if isinstance(stream, trio.SocketStream):
        return SocketTransport(stream)
    return StreamTransport(stream)


class _Fair:
    """The credit of work done since this connection last let others run."""

    def __init__(self) -> None:
        self._credit = YIELD_EVERY

    def due(self) -> bool:
        self._credit -= 1
        if self._credit > 0:
            return False
        self._credit = YIELD_EVERY
        return True

    def waited(self) -> None:
        """We just waited in trio, so the others had their turn."""
        self._credit = YIELD_EVERY


class StreamTransport(_Fair):
    def __init__(self, stream: trio.abc.Stream) -> None:
        super().__init__()
        self.stream = stream

    async def receive(self, max_bytes: int) -> bytes:
        data = bytes(await self.stream.receive_some(max_bytes))
        self.waited()
        return data

    async def send(self, buffers: Sequence[Buffer]) -> None:
        await self.stream.send_all(buffers[0] if len(buffers) == 1 else b"".join(buffers))
        self.waited()

    async def aclose(self) -> None:
        await self.stream.aclose()


class SocketTransport(_Fair):
    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__()
        self.stream = stream  # owns the socket: closing goes through it
        self._fd = stream.socket.fileno()

    async def receive(self, max_bytes: int) -> bytes:
        while True:
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)
                self.waited()
                continue
            except OSError as exc:
                raise _broken(exc) from exc
            if self.due():
                await trio.lowlevel.checkpoint()
            return data

    async def send(self, buffers: Sequence[Buffer]) -> None:
        pending = list(buffers)
        while pending:
            try:
                sent = os.writev(self._fd, pending[:_IOV_MAX])
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)
                self.waited()
                continue
            except OSError as exc:
                raise _broken(exc) from exc
            pending = _advance(pending, sent)
        if self.due():
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await self.stream.aclose()


def _advance(buffers: list[Buffer], sent: int) -> list[Buffer]:
    """What is left of `buffers` once their first `sent` bytes went out."""
    i = 0
    while i < len(buffers) and sent >= len(buffers[i]):
        sent -= len(buffers[i])
        i += 1
    rest = buffers[i:]
    if sent:
        rest[0] = memoryview(rest[0])[sent:]
    return rest


def _broken(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the connection was closed")
    return trio.BrokenResourceError(f"the connection failed: {exc.strerror or exc}")
