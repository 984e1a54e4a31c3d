"""The output queue through a session over in-memory streams: replies leave
in few writes, and a client that does not read holds up only itself."""

from __future__ import annotations

import trio
import trio.testing

from datakit import ninep
from datakit.server.output import MAX_QUEUED_BYTES
from datakit.server.session import Limits
from datakit.vfs import Attr, File, Handle, Kind
from tests.server.peer import Tree, running

SIZE = 1000  # bytes of each read reply's data


class CountedFile(File):
    """SIZE bytes; counts the reads the server made of it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reads = 0

    def attr(self) -> Attr:
        return Attr(Kind.FILE, SIZE)

    async def open(self) -> Handle:
        return _CountedHandle(self)


class _CountedHandle(Handle):
    def __init__(self, file: CountedFile) -> None:
        self.file = file

    async def read(self, offset: int, count: int) -> bytes:
        self.file.reads += 1
        return bytes(min(count, max(0, SIZE - offset)))


def test_the_default_bound_is_unchanged() -> None:
    assert Limits().max_queued_bytes == MAX_QUEUED_BYTES == 8 * 1024 * 1024


async def test_a_client_that_does_not_read_stops_the_server_taking_its_requests() -> None:
    bound = 8 * SIZE
    n = 100  # replies of 100 x SIZE bytes: far more than the bound
    counted = CountedFile("f")
    async with running(Tree("/", counted), Limits(max_queued_bytes=bound)) as r:
        await r.peer.start()
        await r.peer.rpc(ninep.Twalk(tag=1, fid=1, newfid=2, wnames=("f",)))
        await r.peer.rpc(ninep.Topen(tag=1, fid=2, mode=ninep.OREAD))
        reads = [ninep.Tread(tag=t, fid=2, offset=0, count=SIZE) for t in range(n)]
        await r.peer.send(*reads)  # and read nothing for now
        await trio.testing.wait_all_tasks_blocked()
        # The session waits for the client: it holds about the bound, not
        # every reply, and has left the remaining requests unread.
        assert counted.reads < n // 2
        assert r.session.output.queued <= bound + SIZE + 11
        tags = []
        for _ in range(n):
            reply = await r.peer.receive()
            assert isinstance(reply, ninep.Rread) and len(reply.data) == SIZE
            tags.append(reply.tag)
        assert tags == list(range(n))  # all answered, in order
        assert counted.reads == n


async def test_a_pipelined_burst_is_answered_in_one_write() -> None:
    async with running() as r:
        await r.peer.start()
        stats = [ninep.Tstat(tag=t, fid=1) for t in range(50)]
        await r.peer.send(*stats)
        # Replies flow in lockstep: one receive takes exactly one write.
        r.peer.decoder.feed(await r.peer.stream.receive_some())
        replies = list(r.peer.decoder.messages())
        assert [m.tag for m in replies] == list(range(50))


async def test_a_client_that_goes_away_with_replies_queued_ends_the_session_quietly() -> None:
    async with running() as r:
        await r.peer.start()
        await r.peer.send(*(ninep.Tstat(tag=t, fid=1) for t in range(20)))
        await trio.testing.wait_all_tasks_blocked()  # the session writes; nobody reads
        await r.peer.stream.aclose()
        await r.finished.wait()
        assert r.session.conn.fids.count == 0


class _StuckTransport:
    """A client that never reads: every send waits forever."""

    async def send(self, buffers: object) -> None:
        await trio.sleep_forever()


async def test_queued_views_count_what_they_keep_alive() -> None:
    """A reply read from a cached blob is a view of the whole blob: queued,
    it keeps the blob alive after the cache dropped it, so the bound must
    count the blob, not the 64 KiB sent. 40 views of 3 MiB blobs may not
    all be queued under an 8 MiB bound (they were: 120 MiB held)."""
    from datakit.server.output import OutputQueue

    queue = OutputQueue(_StuckTransport(), max_bytes=MAX_QUEUED_BYTES)  # type: ignore[arg-type]
    blobs = [bytes([i]) * (3 << 20) for i in range(40)]
    queued = 0

    async def reply_all() -> None:
        nonlocal queued
        for blob in blobs:
            await queue.put((b"header", memoryview(blob)[:65536]), defer=True)
            queued += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reply_all)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    held = queued * (3 << 20)
    assert queued < len(blobs)
    assert held <= MAX_QUEUED_BYTES + (3 << 20)  # the bound, and the one reply past it
