"""The transport additions the 9p backend relies on: waiting for a reply
with a timeout (watches), and walks that fail part-way."""

from __future__ import annotations

import time

import pytest

from datakit import ninep
from datakit.client.ninep_client import Client, RemoteError


def test_receive_within_times_out_on_a_blocked_read(client: Client) -> None:
    client.mkdir("branch/master")
    fid = client.open("branch/master/head.live")
    assert client.read_fid(fid, 0) == b"\n"  # the current (empty) head
    assert client.read_fid(fid, 1) == b""  # the flush read
    tag = client.next_tag()
    client.send(ninep.Tread(tag=tag, fid=fid, offset=1, count=4096))
    start = time.monotonic()
    assert client.receive_within(0.2) is None  # blocked until the head moves
    assert 0.2 <= time.monotonic() - start < 2
    # The request is still pending: flushing it gets the Rflush (possibly
    # after the read's own reply, which a flush may not overtake).
    client.send(ninep.Tflush(tag=client.next_tag(), oldtag=tag))
    for _ in range(2):
        reply = client.receive_within(5)
        assert reply is not None
        if isinstance(reply, ninep.Rflush):
            break
    else:
        raise AssertionError("no Rflush")


def test_walk_failing_part_way_raises_and_frees_the_fid(client: Client) -> None:
    client.mkdir("branch/master")
    free_before = len(client._free_fids)
    for path in ("branch/master/missing/deeper", "nothing", "branch/master/head/below"):
        with pytest.raises(RemoteError):
            client.walk(path)
    assert len(client._free_fids) >= free_before
    # Long paths are walked 16 names at a time; a failure after the first 16
    # must release the fid on the server too, or reusing it would fail.
    long = "/".join(["branch", "master", *[".."] * 2] * 6)
    client.clunk(client.walk(long))
    for _ in range(3):
        with pytest.raises(RemoteError):
            client.walk(f"{long}/missing")
        client.clunk(client.walk("branch"))
