"""The transport additions the 9p backend relies on: waiting for a reply
with a timeout (watches), and walks that fail part-way."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from datakit import ninep
from datakit.client import connect
from datakit.client.ninep_client import Client, RemoteError
from tests.operations.procs import datakit_process


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


def test_pipelined_helpers_leak_no_fid_on_errors(client: Client) -> None:
    """Every helper pipelines its walk with what follows; whatever fails,
    the server ends up holding no more fids than before."""
    from datakit import metrics

    client.mkdir("branch/master")
    client.mkdir("branch/master/transactions/t")
    client.rpc(ninep.Tstat, fid=client.root)  # drains unawaited clunks
    before = metrics.FIDS._value.get()
    assert before >= 1  # at least this client's root
    failing = [
        lambda: client.create("branch/master/transactions/t/rw/no/such/f", b"x"),
        lambda: client.create("branch/master/head", b"x"),  # not a directory
        lambda: client.read("branch/master/nothing"),
        lambda: client.write("branch/master/head", b"x"),  # read-only
        lambda: client.write("branch/master/transactions/t/ctl", b"bogus"),
        lambda: client.stat("nothing/here"),
        lambda: client.remove("branch/master/ro/missing"),
        lambda: client.mkdir("branch/master/transactions/t"),  # exists
        lambda: client.listdir("branch/nothing"),
    ]
    for attempt in failing:
        with pytest.raises(RemoteError):
            attempt()
    assert not client.exists("branch/nothing/at/all")
    client.create("branch/master/transactions/t/rw/ok", b"fine")
    assert client.read("branch/master/transactions/t/rw/ok") == b"fine"
    client.rpc(ninep.Tstat, fid=client.root)
    assert metrics.FIDS._value.get() == before
    assert not client._unawaited


def test_helpers_without_pipelining(server: str) -> None:
    """`pipeline=False` (for servers that may reorder requests) sends one
    request at a time and gives the same results and errors."""
    with Client.connect(server, timeout=10, pipeline=False) as c:
        sent: list[str] = []
        real_send = c.send

        def send(msg: ninep.Message) -> None:
            assert c._decoder.next_message() is None  # nothing unread: one at a time
            sent.append(type(msg).__name__)
            real_send(msg)

        c.send = send  # type: ignore[method-assign]
        c.mkdir("branch/b")
        c.mkdir("branch/b/transactions/t")
        c.create("branch/b/transactions/t/rw/f", b"one")
        assert c.read("branch/b/transactions/t/rw/f") == b"one"
        with pytest.raises(RemoteError):
            c.create("branch/b/transactions/t/rw/no/f", b"x")
        c.write("branch/b/transactions/t/ctl", b"commit")
        assert c.read("branch/b/ro/f") == b"one"
        assert sent[:3] == ["Twalk", "Tcreate", "Tclunk"]


def test_a_dropped_connection_is_an_oserror() -> None:
    """docs/client.md: transport failures stay OSErrors, whatever the
    layer that notices them (here the 9p reader seeing EOF where the
    Rversion should be)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def close_at_once() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)  # the Tversion, so the client sees EOF, not a reset
        conn.close()

    t = threading.Thread(target=close_at_once, daemon=True)
    t.start()
    try:
        with pytest.raises(OSError):
            connect(f"tcp://127.0.0.1:{port}")
    finally:
        t.join(5)
        listener.close()


def test_an_ipv6_address_connects(tmp_path: Path) -> None:
    """tcp://[::1]:PORT (and tcp:[::1]:PORT in the bridges) is an IPv6 socket."""
    log = tmp_path / "serve.log"
    both = "tcp://127.0.0.1:0,tcp://[::1]:0"  # replaces the harness's own --listen-9p
    with log.open("wb") as err, datakit_process("--listen-9p", both, stderr=err):
        found = re.search(rb"listening on tcp://\[::1\]:(\d+)", log.read_bytes())
        assert found is not None
        with connect(f"tcp://[::1]:{int(found.group(1))}") as conn:
            assert conn.branches() == []
