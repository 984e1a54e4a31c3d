"""The session over in-memory streams: handshake, requests, closing down.

The same behaviour over real sockets, with other clients beside, is in
test_session_sockets.py; the scheduler and the output queue have their own
files (test_scheduler.py, test_output.py)."""

from __future__ import annotations

import errno

import trio
import trio.testing

from datakit import ninep
from datakit.ninep.handshake import State
from datakit.server.session import Limits
from tests.server.peer import Tree, running


async def test_version_then_attach_makes_the_session_ready() -> None:
    async with running() as r:
        assert r.session.state is State.AWAITING_VERSION
        reply = await r.peer.version("9P2000.u", 65536)
        assert reply == ninep.Rversion(ninep.NOTAG, 65536, "9P2000.u")
        assert r.session.state is State.AWAITING_ATTACH
        attached = await r.peer.attach(fid=1)
        assert isinstance(attached, ninep.Rattach) and attached.qid.type == ninep.QTDIR
        assert r.session.state is State.READY
        assert r.session.conn.fids.count == 1


async def test_the_first_message_must_be_version() -> None:
    async with running() as r:
        await r.peer.send(ninep.Tattach(tag=3, fid=1, afid=ninep.NOFID, uname="u", aname=""))
        reply = await r.peer.receive()
        assert reply == ninep.Rerror(3, "Expected Version message")  # 9P2000: no errno
        assert await r.peer.receive() is None  # and the connection is closed
        await r.finished.wait()
        assert r.session.state is State.CLOSING


async def test_an_unknown_version_is_answered_then_the_connection_closed() -> None:
    async with running() as r:
        reply = await r.peer.rpc(ninep.Tversion(tag=ninep.NOTAG, msize=8192, version="HTTP/1.1"))
        assert reply == ninep.Rversion(ninep.NOTAG, 8192, "unknown")
        assert await r.peer.receive() is None


async def test_msize_is_capped_by_the_server_limit() -> None:
    async with running(limits=Limits(max_msize=16384)) as r:
        reply = await r.peer.version("9P2000.L", 1 << 20)
        assert reply.msize == 16384
        assert r.session.decoder.max_size == 16384
        await r.peer.send_raw((16385).to_bytes(4, "little") + b"\x76\x01\x00")
        reply2 = await r.peer.receive()
        assert isinstance(reply2, ninep.Rlerror) and reply2.tag == ninep.NOTAG
        assert await r.peer.receive() is None


async def test_a_second_version_before_attach_negotiates_again() -> None:
    async with running() as r:
        await r.peer.version("9P2000.u", 8192)
        await r.peer.version("9P2000.L", 16384)
        assert (r.session.conn.dialect, r.session.conn.msize) == (ninep.Dialect.L, 16384)
        assert isinstance(await r.peer.attach(), ninep.Rattach)  # decoded in .L
        reply = await r.peer.rpc(ninep.Tgetattr(tag=2, fid=1, request_mask=ninep.GETATTR_BASIC))
        assert isinstance(reply, ninep.Rgetattr)  # a .L-only request


async def test_version_after_attach_is_not_implemented_and_changes_nothing() -> None:
    """As the original did (spec/protocol.md §2): no reset once attached."""
    async with running() as r:
        await r.peer.start("9P2000.u", 8192)
        reply = await r.peer.rpc(ninep.Tversion(tag=5, msize=65536, version="9P2000.L"))
        assert isinstance(reply, ninep.Rerror) and reply.ename == "Function not implemented"
        assert r.session.state is State.READY
        assert (r.session.conn.dialect, r.session.conn.msize) == (ninep.Dialect.U, 8192)
        assert isinstance(await r.peer.rpc(ninep.Tstat(tag=6, fid=1)), ninep.Rstat)


async def test_tauth_on_dot_l_says_no_authentication_and_attach_follows() -> None:
    async with running() as r:
        await r.peer.version("9P2000.L")
        reply = await r.peer.rpc(ninep.Tauth(tag=2, afid=9, uname="u", aname="", n_uname=0))
        assert reply == ninep.Rlerror(2, errno.ENOENT)
        assert r.session.state is State.AWAITING_ATTACH
        assert isinstance(await r.peer.attach(), ninep.Rattach)


async def test_anything_but_attach_after_version_closes_on_legacy_dialects() -> None:
    async with running() as r:
        await r.peer.version("9P2000.u")
        reply = await r.peer.rpc(ninep.Tauth(tag=2, afid=9, uname="u", aname=""))
        assert isinstance(reply, ninep.Rerror) and reply.ename == "Expected Attach message"
        assert await r.peer.receive() is None


async def test_a_failed_attach_leaves_the_session_awaiting_attach() -> None:
    async with running(limits=Limits(max_fids=0)) as r:
        await r.peer.version()
        reply = await r.peer.attach(fid=1)
        assert isinstance(reply, ninep.Rerror) and reply.errno == errno.EMFILE
        assert r.session.state is State.AWAITING_ATTACH


async def test_attach_walk_open_read_stat_and_list_the_example_tree() -> None:
    async with running() as r:
        peer = r.peer
        await peer.start("9P2000.u")
        walked = await peer.rpc(ninep.Twalk(tag=2, fid=1, newfid=2, wnames=("dir", "a")))
        assert isinstance(walked, ninep.Rwalk) and len(walked.qids) == 2
        assert isinstance(await peer.rpc(ninep.Topen(tag=3, fid=2, mode=ninep.OREAD)), ninep.Ropen)
        assert await peer.rpc(ninep.Tread(tag=4, fid=2, offset=0, count=100)) == ninep.Rread(
            4, b"a"
        )
        stat = await peer.rpc(ninep.Tstat(tag=5, fid=2))
        assert isinstance(stat, ninep.Rstat) and (stat.stat.name, stat.stat.length) == ("a", 1)
        assert await peer.rpc(ninep.Tclunk(tag=6, fid=2)) == ninep.Rclunk(6)
        missing = await peer.rpc(ninep.Twalk(tag=8, fid=1, newfid=3, wnames=("nope",)))
        assert missing == ninep.Rerror(8, "No such file or directory", errno.ENOENT)
        # The root, listed as 9P2000.u stat records.
        await peer.rpc(ninep.Twalk(tag=9, fid=1, newfid=4, wnames=()))
        await peer.rpc(ninep.Topen(tag=10, fid=4, mode=ninep.OREAD))
        listing = await peer.rpc(ninep.Tread(tag=11, fid=4, offset=0, count=4096))
        assert isinstance(listing, ninep.Rread)
        stats = ninep.decode_stats(listing.data, ninep.Dialect.U)
        assert sorted(s.name for s in stats) == ["dir", "hello"]
        assert r.session.conn.fids.count == 2  # the root and the open directory


async def test_dot_l_lists_with_readdir() -> None:
    async with running() as r:
        await r.peer.start("9P2000.L")
        await r.peer.rpc(ninep.Twalk(tag=2, fid=1, newfid=2, wnames=("dir",)))
        await r.peer.rpc(ninep.Tlopen(tag=3, fid=2, flags=0))
        reply = await r.peer.rpc(ninep.Treaddir(tag=4, fid=2, offset=0, count=4096))
        assert isinstance(reply, ninep.Rreaddir)
        assert [d.name for d in ninep.decode_dirents(reply.data)] == ["a"]


async def test_a_pipelined_chain_is_answered_in_order() -> None:
    """walk, create, write, clunk sent at once: the same fid, in arrival order."""
    async with running() as r:
        await r.peer.start()
        await r.peer.send(
            ninep.Twalk(tag=2, fid=1, newfid=2, wnames=("dir",)),
            ninep.Tcreate(tag=3, fid=2, name="new", perm=0o644, mode=ninep.OWRITE),
            ninep.Twrite(tag=4, fid=2, offset=0, data=b"fresh"),
            ninep.Tclunk(tag=5, fid=2),
        )
        replies = [await r.peer.receive() for _ in range(4)]
        assert [type(m) for m in replies] == [
            ninep.Rwalk,
            ninep.Rcreate,
            ninep.Rwrite,
            ninep.Rclunk,
        ]
        read = await r.peer.rpc(ninep.Twalk(tag=6, fid=1, newfid=2, wnames=("dir", "new")))
        assert isinstance(read, ninep.Rwalk)
        await r.peer.rpc(ninep.Topen(tag=7, fid=2, mode=ninep.OREAD))
        assert await r.peer.rpc(ninep.Tread(tag=8, fid=2, offset=0, count=99)) == ninep.Rread(
            8, b"fresh"
        )


async def test_a_read_only_connection_refuses_changes() -> None:
    async with running(read_only=True) as r:
        await r.peer.start()
        reply = await r.peer.rpc(ninep.Tcreate(tag=2, fid=1, name="x", perm=0o644, mode=1))
        assert isinstance(reply, ninep.Rerror) and reply.errno == errno.EROFS


async def test_a_malformed_frame_after_attach_is_answered_and_the_session_goes_on() -> None:
    async with running() as r:
        await r.peer.start()
        # A Twalk claiming two names but carrying one: a readable header, a bad body.
        body = bytes([ninep.Twalk.TYPE]) + (77).to_bytes(2, "little")
        body += (1).to_bytes(4, "little") + (9).to_bytes(4, "little") + (2).to_bytes(2, "little")
        body += (1).to_bytes(2, "little") + b"x"
        await r.peer.send_raw((len(body) + 4).to_bytes(4, "little") + body)
        reply = await r.peer.receive()
        assert isinstance(reply, ninep.Rerror) and reply.tag == 77
        assert reply.errno == errno.EPROTO
        assert isinstance(await r.peer.rpc(ninep.Tstat(tag=2, fid=1)), ninep.Rstat)


async def test_the_end_of_the_connection_clunks_every_fid_and_detaches_the_tree() -> None:
    tree = Tree("/")
    async with running(tree) as r:
        await r.peer.start()
        await r.peer.rpc(ninep.Twalk(tag=2, fid=1, newfid=2, wnames=()))
        assert r.session.conn.fids.count == 2
        await r.peer.stream.aclose()
        await r.finished.wait()
        assert r.session.state is State.CLOSING
        assert r.session.conn.fids.count == 0
        assert tree.detached


async def test_a_connection_that_does_not_attach_in_time_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = Limits(handshake_timeout=30)
    async with running(limits=limits) as idle:
        await idle.peer.version()
        assert await idle.peer.receive() is None  # after 30 s of (virtual) time
        assert trio.current_time() >= 30
        assert idle.session.state is State.CLOSING
    async with running(limits=limits) as attached:
        await attached.peer.start()
        await trio.sleep(3600)  # an attached client may idle as long as it likes
        assert isinstance(await attached.peer.rpc(ninep.Tstat(tag=2, fid=1)), ninep.Rstat)
