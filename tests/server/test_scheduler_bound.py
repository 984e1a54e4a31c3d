"""The bound on blocking requests per connection never stops the read loop.

Past the bound a request that would have to wait gets an error at once, and
everything else (Tflush first) is still answered."""

from __future__ import annotations

import errno
from pathlib import Path

from datakit import ninep
from datakit.client.ninep_client import Client, ConnectionClosed
from datakit.server.session import Limits
from tests.operations.procs import datakit_process

BOUND = Limits().max_pending


def test_blocked_reads_beyond_the_bound_fail_and_flush_still_works(server: str) -> None:
    with Client.connect(server, timeout=30) as c:
        c.mkdir("branch/master")
        fid = c.open("branch/master/head.live")
        assert c.read_fid(fid, 0) == b"\n"
        assert c.read_fid(fid, 1) == b""  # from here on a read waits for a commit
        n = BOUND + 76
        tags = [c.next_tag() for _ in range(n)]
        c.sock.sendall(
            b"".join(
                ninep.encode(ninep.Tread(tag=t, fid=fid, offset=1, count=64), c.dialect)
                for t in tags
            )
        )
        flush_tag, stat_tag = c.next_tag(), c.next_tag()
        c.send(ninep.Tflush(tag=flush_tag, oldtag=tags[0]))
        c.send(ninep.Tstat(tag=stat_tag, fid=c.root))
        refused: set[int] = set()
        answered: set[int] = set()
        while not ({flush_tag, stat_tag} <= answered and len(refused) == n - BOUND):
            reply = c.receive_within(20)
            if reply is None:
                raise ConnectionClosed(f"stalled: {len(refused)} refusals, {answered} answered")
            if isinstance(reply, ninep.Rerror):
                assert reply.errno == errno.EAGAIN, reply
                assert "outstanding" in reply.ename
                refused.add(reply.tag)
            else:
                answered.add(reply.tag)
        # The first BOUND reads wait; only the ones past the bound were refused.
        assert refused == set(tags[BOUND:])
        assert tags[0] not in answered  # a flushed request is never answered
        assert c.receive_within(0.2) is None  # the other reads still wait
        # The flushed read freed a place: one more blocking read is accepted.
        extra = c.next_tag()
        c.send(ninep.Tread(tag=extra, fid=fid, offset=1, count=64))
        assert c.receive_within(0.3) is None
        # Every accepted read is still waiting, and each can still be flushed.
        flushes = {c.next_tag(): t for t in [*tags[1:BOUND], extra]}
        c.sock.sendall(
            b"".join(
                ninep.encode(ninep.Tflush(tag=f, oldtag=t), c.dialect) for f, t in flushes.items()
            )
        )
        flushed = set()
        while len(flushed) < len(flushes):
            reply = c.receive_within(20)
            assert isinstance(reply, ninep.Rflush), reply
            flushed.add(reply.tag)
        assert flushed == set(flushes)
        assert c.read("branch/master/head") == b"\n"


def test_a_long_commit_never_stops_the_read_loop(tmp_path: Path) -> None:
    """A commit hashing a big file waits on a worker thread for seconds: the
    other requests on its connection (a kernel mount multiplexes every
    process on one) and a Tflush are answered meanwhile, not after it."""
    tx = "branch/master/transactions/t"
    with datakit_process("--git", str(tmp_path / "repo")) as (port, _, _proc):
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=60) as c:
            c.mkdir("branch/master")
            c.mkdir(tx)
            c.create(f"{tx}/rw/big")
            fid = c.open(f"{tx}/rw/big", ninep.OWRITE)
            c.write_fid(fid, b"end", 1 << 30)  # sparse: hashing 1 GiB takes seconds
            c.clunk(fid)
            ctl = c.open(f"{tx}/ctl", ninep.OWRITE)
            commit_tag, stat_tag, flush_tag = c.next_tag(), c.next_tag(), c.next_tag()
            c.send(ninep.Twrite(tag=commit_tag, fid=ctl, offset=0, data=b"commit"))
            c.send(ninep.Tstat(tag=stat_tag, fid=c.root))
            c.send(ninep.Tflush(tag=flush_tag, oldtag=c.next_tag()))  # of nothing pending
            order = []
            while commit_tag not in order:
                reply = c.receive_within(120)
                assert reply is not None, f"stalled after {order}"
                assert not isinstance(reply, ninep.Rerror), reply
                order.append(reply.tag)  # type: ignore[attr-defined]
            assert order == [stat_tag, flush_tag, commit_tag]
            c.clunk(ctl)
            assert c.stat("branch/master/ro/big").length == (1 << 30) + 3
