"""The scheduler through a session over in-memory streams: blocking requests
run beside the others, Tflush cancels them, tags, and the pending bound."""

from __future__ import annotations

import errno

import trio.testing

from datakit import ninep
from datakit.server.session import Limits
from datakit.vfs import Cell, StreamFile
from tests.server.peer import Peer, Tree, running

LIVE_FIDS = (10, 11, 12, 13)


def live_tree() -> tuple[Tree, Cell[str]]:
    """/live: a line per value of the cell; a read past it waits for a change."""
    cell = Cell("one")
    return Tree("/", StreamFile("live", cell, lambda v: f"{v}\n".encode())), cell


async def open_live(peer: Peer, fid: int) -> None:
    """Open /live on `fid` and read its first line: the next read blocks."""
    await peer.rpc(ninep.Twalk(tag=1, fid=1, newfid=fid, wnames=("live",)))
    await peer.rpc(ninep.Topen(tag=1, fid=fid, mode=ninep.OREAD))
    assert await peer.rpc(ninep.Tread(tag=1, fid=fid, offset=0, count=64)) == ninep.Rread(
        1, b"one\n"
    )
    # The empty reply that ends a read(2) (the Linux flush rule, spec 2.6).
    assert await peer.rpc(ninep.Tread(tag=1, fid=fid, offset=4, count=64)) == ninep.Rread(1, b"")


def blocked_read(tag: int, fid: int) -> ninep.Tread:
    return ninep.Tread(tag=tag, fid=fid, offset=4, count=64)


async def settle() -> None:
    """Until every task waits: the session has handled all it was sent."""
    await trio.testing.wait_all_tasks_blocked()


async def test_a_blocked_read_does_not_hold_up_the_connection() -> None:
    tree, cell = live_tree()
    async with running(tree) as r:
        await r.peer.start()
        await open_live(r.peer, 10)
        await r.peer.send(blocked_read(20, 10))
        assert isinstance(await r.peer.rpc(ninep.Tstat(tag=21, fid=1)), ninep.Rstat)
        assert r.session.scheduler.pending == 1
        cell.set("two")
        assert await r.peer.receive() == ninep.Rread(20, b"two\n")
        await settle()
        assert r.session.scheduler.pending == 0


async def test_flush_cancels_a_blocked_read_and_its_reply_is_never_sent() -> None:
    tree, cell = live_tree()
    async with running(tree) as r:
        await r.peer.start()
        await open_live(r.peer, 10)
        await r.peer.send(blocked_read(20, 10))
        await settle()
        assert cell.readers == 1  # the read waits on the cell
        assert await r.peer.rpc(ninep.Tflush(tag=21, oldtag=20)) == ninep.Rflush(21)
        await settle()
        assert cell.readers == 0  # really cancelled, not left waiting in the background
        assert r.session.scheduler.pending == 0
        cell.set("two")
        # The next reply is the stat's: the flushed read never answers.
        assert isinstance(await r.peer.rpc(ninep.Tstat(tag=22, fid=1)), ninep.Rstat)
        # The fid is usable again, and sees the new value.
        assert await r.peer.rpc(blocked_read(23, 10)) == ninep.Rread(23, b"two\n")


async def test_flushing_a_tag_nobody_uses_is_answered() -> None:
    async with running() as r:
        await r.peer.start()
        assert await r.peer.rpc(ninep.Tflush(tag=2, oldtag=99)) == ninep.Rflush(2)
        assert await r.peer.rpc(ninep.Tflush(tag=3, oldtag=ninep.NOTAG)) == ninep.Rflush(3)


async def test_a_tag_in_use_is_refused() -> None:
    tree, _cell = live_tree()
    async with running(tree) as r:
        await r.peer.start()
        await open_live(r.peer, 10)
        await r.peer.send(blocked_read(20, 10))
        reply = await r.peer.rpc(ninep.Tstat(tag=20, fid=1))
        assert reply == ninep.Rerror(20, "Tag in use", errno.EINVAL)
        assert await r.peer.rpc(ninep.Tflush(tag=21, oldtag=20)) == ninep.Rflush(21)


async def test_a_clunk_waits_for_the_blocked_read_on_its_fid() -> None:
    tree, _cell = live_tree()
    async with running(tree) as r:
        await r.peer.start()
        await open_live(r.peer, 10)
        await r.peer.send(blocked_read(20, 10), ninep.Tclunk(tag=21, fid=10))
        # Neither is answered, but other fids are not held up.
        assert isinstance(await r.peer.rpc(ninep.Tstat(tag=22, fid=1)), ninep.Rstat)
        assert r.session.conn.fids.count == 2
        await r.peer.send(ninep.Tflush(tag=23, oldtag=20))
        replies = {await r.peer.receive(), await r.peer.receive()}
        assert replies == {ninep.Rflush(23), ninep.Rclunk(21)}
        assert r.session.conn.fids.count == 1


async def test_past_the_pending_bound_a_blocking_request_is_refused_at_once() -> None:
    tree, cell = live_tree()
    async with running(tree, Limits(max_pending=2)) as r:
        await r.peer.start()
        for fid in LIVE_FIDS:
            await open_live(r.peer, fid)
        await r.peer.send(blocked_read(20, 10), blocked_read(21, 11), blocked_read(22, 12))
        refused = await r.peer.receive()
        assert isinstance(refused, ninep.Rerror) and refused.tag == 22
        assert refused.errno == errno.EAGAIN and "outstanding" in refused.ename
        assert r.session.scheduler.pending == 2
        # The read loop still reads: a flush frees a place for another read.
        assert await r.peer.rpc(ninep.Tflush(tag=23, oldtag=20)) == ninep.Rflush(23)
        await r.peer.send(blocked_read(24, 13))
        await settle()
        assert r.session.scheduler.pending == 2
        cell.set("two")
        answered = {await r.peer.receive(), await r.peer.receive()}
        assert answered == {ninep.Rread(21, b"two\n"), ninep.Rread(24, b"two\n")}
        await settle()
        assert r.session.scheduler.pending == 0


async def test_ending_the_connection_cancels_blocked_requests() -> None:
    tree, cell = live_tree()
    async with running(tree) as r:
        await r.peer.start()
        await open_live(r.peer, 10)
        await r.peer.send(blocked_read(20, 10))
        await settle()
        assert cell.readers == 1
        await r.peer.stream.aclose()
        await r.finished.wait()
        assert cell.readers == 0
