"""LiveLog: the capped in-memory output of a running job, streamed to many
readers at once."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from datakit.ci.livelog import CHUNK_MAX, LiveLog, truncation_note
from datakit.ci.model import LiveLogView


async def collect(log: LiveLog, start: int = 0) -> bytes:
    out = bytearray()
    async for chunk in log.chunks(start):
        assert chunk, "a reader is never handed an empty chunk"
        out += chunk
    return bytes(out)


def test_is_a_live_log_view() -> None:
    log: LiveLogView = LiveLog()
    assert not log.closed


def test_write_snapshot_close() -> None:
    log = LiveLog()
    log.write(b"one\n")
    log.write(b"")
    log.write(b"\x00\xff binary \x1b[31mred\n")
    assert log.snapshot() == b"one\n\x00\xff binary \x1b[31mred\n"
    assert log.size == len(log.snapshot())
    assert not log.closed
    log.close()
    log.close()  # twice is harmless
    assert log.closed
    assert log.snapshot() == b"one\n\x00\xff binary \x1b[31mred\n"  # no note: nothing dropped
    with pytest.raises(RuntimeError):
        log.write(b"late")


def test_cap_keeps_the_head_and_counts_the_rest() -> None:
    log = LiveLog(cap=10)
    log.write(b"0123456")
    log.write(b"789abcdef")  # 3 fit, 6 dropped
    log.write(b"XYZ")  # all dropped
    assert log.snapshot() == b"0123456789"
    assert log.dropped == 9
    log.close()
    assert log.snapshot() == b"0123456789" + truncation_note(9)
    assert log.snapshot().count(b"truncated") == 1
    assert b"9 more bytes not kept" in log.snapshot()


def test_negative_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        LiveLog(cap=-1)
    with pytest.raises(ValueError):
        LiveLog().chunks(-1)


async def test_reader_follows_the_writer_and_ends_at_close() -> None:
    log = LiveLog()
    received: list[bytes] = []
    got_one = trio.Event()

    async def reader() -> None:
        async for chunk in log.chunks():
            received.append(chunk)
            got_one.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert received == []  # waiting, not finished: nothing was written
        log.write(b"first\n")
        with trio.fail_after(10):
            await got_one.wait()
        assert received == [b"first\n"]  # streamed before the log ends
        log.write(b"second\n")
        await trio.testing.wait_all_tasks_blocked()
        assert b"".join(received) == b"first\nsecond\n"
        log.close()
    assert b"".join(received) == b"first\nsecond\n"


async def test_many_readers_and_offsets() -> None:
    log = LiveLog()
    results: dict[str, bytes] = {}

    async def read(name: str, start: int) -> None:
        results[name] = await collect(log, start)

    log.write(b"hello ")
    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(read, f"r{i}", 0)
        nursery.start_soon(read, "from3", 3)
        nursery.start_soon(read, "beyond", 8)  # waits until byte 8 exists
        await trio.testing.wait_all_tasks_blocked()
        log.write(b"world")
        await trio.testing.wait_all_tasks_blocked()
        log.close()
    for i in range(5):
        assert results[f"r{i}"] == b"hello world"
    assert results["from3"] == b"lo world"
    assert results["beyond"] == b"rld"


async def test_a_reader_of_a_closed_log_gets_everything_including_the_note() -> None:
    log = LiveLog(cap=4)
    log.write(b"abcdefgh")
    log.close()
    assert await collect(log) == b"abcd" + truncation_note(4)
    assert await collect(log, 10_000) == b""


async def test_a_slow_reader_does_not_hold_the_writer_and_gets_it_all() -> None:
    """The writer never waits for readers: 300 writes with a reader that has
    not yet read anything, then the reader gets every byte, in order, in
    chunks of at most CHUNK_MAX."""
    log = LiveLog()
    reader = log.chunks()
    expected = bytearray()
    for i in range(300):
        piece = bytes([i % 256]) * 1000
        log.write(piece)  # synchronous: cannot block on a reader
        expected += piece
    log.close()
    out = bytearray()
    async for chunk in reader:
        assert len(chunk) <= CHUNK_MAX
        out += chunk
    assert out == expected


async def test_abandoned_reader_is_harmless() -> None:
    log = LiveLog()
    log.write(b"x" * (3 * CHUNK_MAX))
    async for chunk in log.chunks():
        assert chunk
        break  # a browser that went away
    log.write(b"more")
    log.close()
    assert log.snapshot().endswith(b"more")


async def test_megabytes_stay_capped() -> None:
    log = LiveLog(cap=1 << 20)
    block = b"y" * 65536
    for _ in range(100):  # 6.25 MiB written
        log.write(block)
    log.close()
    assert log.size == (1 << 20) + len(truncation_note(100 * 65536 - (1 << 20)))
    assert log.dropped == 100 * 65536 - (1 << 20)
