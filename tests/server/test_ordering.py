"""Per-fid ordering: pipelined dependent requests run in arrival order, and a
request on a fid waits for a blocked request before it on the same fid."""

from __future__ import annotations

import trio

from datakit import ninep
from datakit.client.ninep_client import Client, ConnectionClosed
from datakit.server import ordering


def test_claims_share_used_fids_and_own_rebound_ones() -> None:
    assert ordering.claims(ninep.Twalk(tag=1, fid=1, newfid=2, wnames=("a",))) == ((1,), (2,))
    # Walking a fid onto itself rebinds it.
    assert ordering.claims(ninep.Twalk(tag=1, fid=3, newfid=3, wnames=())) == ((), (3,))
    assert ordering.claims(ninep.Tread(tag=1, fid=4, offset=0, count=1)) == ((4,), ())
    assert ordering.claims(ninep.Tclunk(tag=1, fid=4)) == ((), (4,))
    assert ordering.claims(ninep.Topen(tag=1, fid=4, mode=0)) == ((), (4,))
    assert ordering.claims(
        ninep.Trenameat(tag=1, olddirfid=5, oldname="a", newdirfid=6, newname="b")
    ) == ((5, 6), ())
    assert ordering.claims(ninep.Trename(tag=1, fid=7, dfid=8, name="x")) == ((8,), (7,))
    assert ordering.claims(ninep.Tflush(tag=1, oldtag=2)) == ((), ())


def test_owner_waits_for_sharers_and_sharers_for_the_owner() -> None:
    async def main() -> None:
        order = ordering.FidOrder()
        assert order.pending((1,), ()) == []
        read1, read2, clunk = trio.Event(), trio.Event(), trio.Event()
        order.enter((1,), (), read1)
        order.enter((1,), (), read2)
        # Two reads of one fid do not wait for each other...
        assert order.pending((1,), ()) == []
        # ...but whatever rebinds or closes the fid waits for both.
        assert order.pending((), (1,)) == [read1, read2]
        order.enter((), (1,), clunk)
        assert order.pending((1,), ()) == [clunk]
        assert order.pending((2,), (3,)) == []  # other fids are free
        for e in (read1, read2, clunk):
            e.set()
        order.leave((1,))
        assert order.pending((), (1,)) == []
        assert not order._gates  # nothing kept once everything finished

    trio.run(main)


def test_pipelined_chains_run_in_order(example_server: str) -> None:
    """200 walk/create/write/clunk chains sent in one go all succeed."""
    with Client.connect(example_server, timeout=10) as c:
        requests = []
        for i in range(200):
            fid = 100 + i
            requests += [
                (ninep.Twalk, {"fid": c.root, "newfid": fid, "wnames": ()}),
                (
                    ninep.Tcreate,
                    {"fid": fid, "name": f"f{i}", "perm": 0o644, "mode": 1, "extension": ""},
                ),
                (ninep.Twrite, {"fid": fid, "offset": 0, "data": f"body {i}".encode()}),
                (ninep.Twrite, {"fid": fid, "offset": len(f"body {i}"), "data": b"!"}),
                (ninep.Tclunk, {"fid": fid}),
            ]
        replies = c.pipeline(requests)
        assert not [r for r in replies if isinstance(r, ninep.Rerror)]
        for i in (0, 57, 199):
            assert c.read(f"f{i}") == f"body {i}!".encode()


def test_a_clunk_waits_for_a_blocked_read_on_its_fid(server: str) -> None:
    """The clunk pipelined behind a blocked head.live read is answered only
    once the read ends (here: flushed); requests on other fids carry on."""
    with Client.connect(server, timeout=10) as c:
        c.mkdir("branch/master")
        fid = c.open("branch/master/head.live")
        assert c.read_fid(fid, 0) == b"\n"
        assert c.read_fid(fid, 1) == b""  # now the next read blocks
        read_tag, clunk_tag = c.next_tag(), c.next_tag()
        c.send(ninep.Tread(tag=read_tag, fid=fid, offset=1, count=4096))
        c.send(ninep.Tclunk(tag=clunk_tag, fid=fid))
        assert c.receive_within(0.3) is None  # neither the read nor the clunk
        assert c.read("branch/master/head") == b"\n"  # other fids are not held up
        flush_tag = c.next_tag()
        c.send(ninep.Tflush(tag=flush_tag, oldtag=read_tag))
        tags = []
        while len(tags) < 2:
            reply = c.receive_within(5)
            if reply is None:
                raise ConnectionClosed("no reply to the flush or the clunk")
            tags.append(reply.tag)  # type: ignore[attr-defined]
        assert read_tag not in tags  # a flushed request is never answered
        assert sorted(tags) == sorted([flush_tag, clunk_tag])
        # The fid really is gone: its number can be bound again.
        c.rpc(ninep.Twalk, fid=c.root, newfid=fid, wnames=("branch",))
        c.clunk(fid)
