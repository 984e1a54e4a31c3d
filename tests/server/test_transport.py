"""The socket transport: try first, wait only when the kernel says so, stay fair."""

from __future__ import annotations

import socket
import threading

from datakit import ninep
from datakit.client.ninep_client import Client
from datakit.server.transport import _advance


def test_advance_drops_whole_buffers_then_slices_the_next() -> None:
    parts = [b"abc", b"de", b"fghij"]
    assert _advance(list(parts), 0) == parts
    assert _advance(list(parts), 3) == [b"de", b"fghij"]
    rest = _advance(list(parts), 6)
    assert [bytes(p) for p in rest] == [b"ghij"]
    assert _advance(list(parts), 10) == []


def _flood(address: str, stop: threading.Event, answered: list[int]) -> None:
    """Pipeline small reads without pause (a sender thread) while reading
    every reply, until `stop`: there is always a request waiting."""
    with Client.connect(address, timeout=30) as c:
        c.create("flood", b"y" * 10)
        fid = c.open("flood")
        batch = b"".join(
            ninep.encode(ninep.Tread(tag=i, fid=fid, offset=0, count=10), c.dialect)
            for i in range(200)
        )
        sent = threading.Semaphore(0)

        def send() -> None:
            try:
                while not stop.is_set():
                    c.sock.sendall(batch)
                    sent.release()
            except OSError:
                pass  # shut down below

        sender = threading.Thread(target=send)
        sender.start()
        try:
            while not stop.is_set():
                sent.acquire(timeout=30)
                for _ in range(200):
                    assert isinstance(c.receive(), ninep.Rread)
                answered[0] += 200
        finally:
            stop.set()
            c.sock.shutdown(socket.SHUT_RDWR)  # a sender blocked in sendall returns
            sender.join(30)


def test_a_client_that_never_stops_sending_does_not_starve_another(example_server: str) -> None:
    """Its requests are always there to read, so the session never has to
    wait for data: it must still yield to the other connections."""
    stop = threading.Event()
    answered = [0]
    flooder = threading.Thread(target=_flood, args=(example_server, stop, answered))
    flooder.start()
    try:
        while answered[0] < 2000:  # the flood is on
            assert flooder.is_alive()
            stop.wait(0.01)
        with Client.connect(example_server, timeout=20) as other:
            for i in range(50):
                other.create(f"f{i}", b"%d" % i)
                assert other.read(f"f{i}") == b"%d" % i
        assert flooder.is_alive()  # the flood went on meanwhile
    finally:
        stop.set()
        flooder.join(30)


def test_replies_to_a_client_that_does_not_read_wait_and_arrive_whole(
    example_server: str,
) -> None:
    """Writes that the socket takes only in part (the client is not reading)
    resume where they stopped; other clients are served meanwhile."""
    payload = bytes(range(256)) * 256  # 64 KiB
    with Client.connect(example_server, msize=65536 + 4096, timeout=30) as slow:
        slow.create("big", payload)
        fid = slow.open("big")
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        n = 64  # 4 MiB of replies: far more than the socket buffers
        frames = b"".join(
            ninep.encode(ninep.Tread(tag=i, fid=fid, offset=0, count=65536), slow.dialect)
            for i in range(n)
        )
        slow.sock.sendall(frames)
        with Client.connect(example_server, timeout=20) as other:
            other.create("small", b"ok")
            assert other.read("small") == b"ok"
        for _ in range(n):
            reply = slow.receive()
            assert isinstance(reply, ninep.Rread) and reply.data == payload
