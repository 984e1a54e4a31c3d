"""The incremental Decoder: chunking, limits, recovery after errors."""

from __future__ import annotations

import pytest

from datakit.ninep import (
    DEFAULT_MAX_SIZE,
    HEADER_SIZE,
    Decoder,
    Dialect,
    Message,
    MessageTooLarge,
    ProtocolError,
    Rread,
    Tattach,
    Tclunk,
    Tlopen,
    Tversion,
    Twalk,
    encode,
)

from .samples import all_samples

V, U, L = Dialect.V2000, Dialect.U, Dialect.L


def _stream(dialect: Dialect) -> tuple[list[Message], bytes]:
    msgs = [m for m, d in all_samples() if d is dialect]
    return msgs, b"".join(encode(m, dialect) for m in msgs)


def test_defaults() -> None:
    d = Decoder()
    assert d.dialect is V
    assert d.max_size == DEFAULT_MAX_SIZE == 8192 + 24
    assert d.next_message() is None
    assert list(d.messages()) == []


@pytest.mark.parametrize("dialect", [V, U, L])
def test_many_frames_in_one_feed(dialect: Dialect) -> None:
    msgs, data = _stream(dialect)
    d = Decoder(dialect, max_size=1 << 20)
    d.feed(data)
    assert list(d.messages()) == msgs
    assert d.buffered == 0


@pytest.mark.parametrize("dialect", [V, L])
def test_byte_at_a_time(dialect: Dialect) -> None:
    msgs, data = _stream(dialect)
    d = Decoder(dialect, max_size=1 << 20)
    out: list[Message] = []
    for i in range(len(data)):
        d.feed(data[i : i + 1])
        out.extend(d.messages())
    assert out == msgs


@pytest.mark.parametrize("chunk", [3, 7, 100, 4096, 65536])
def test_odd_chunk_sizes_and_compaction(chunk: int) -> None:
    msgs = [Rread(i % 65536, bytes([i % 256]) * (i % 9000)) for i in range(300)]
    data = b"".join(encode(m, L) for m in msgs)
    d = Decoder(L, max_size=9100)
    out: list[Message] = []
    for i in range(0, len(data), chunk):
        d.feed(memoryview(data)[i : i + chunk])
        out.extend(d.messages())
    assert out == msgs
    assert d.buffered == 0


def test_oversize_rejected_before_body_arrives() -> None:
    d = Decoder(V, max_size=8192)
    d.feed((8193).to_bytes(4, "little"))
    with pytest.raises(MessageTooLarge) as info:
        d.next_message()
    assert info.value.tag is None  # header not yet readable
    assert isinstance(info.value, ProtocolError)
    # the decoder stays stuck on the bad size: the stream cannot be resynchronised
    with pytest.raises(MessageTooLarge):
        d.next_message()


def test_oversize_reports_tag_when_header_buffered() -> None:
    d = Decoder(V, max_size=100)
    d.feed(encode(Rread(42, bytes(200)), V)[:9])
    with pytest.raises(MessageTooLarge) as info:
        d.next_message()
    assert info.value.tag == 42


@pytest.mark.parametrize("size", [0, 1, 4, 6])
def test_size_below_header_rejected(size: int) -> None:
    d = Decoder()
    d.feed(size.to_bytes(4, "little"))
    with pytest.raises(MessageTooLarge):
        d.next_message()


def test_exact_max_size_accepted_and_max_size_settable() -> None:
    frame = encode(Rread(1, bytes(100)), V)
    d = Decoder(V, max_size=len(frame) - 1)
    d.feed(frame)
    with pytest.raises(MessageTooLarge):
        d.next_message()
    d.max_size = len(frame)
    assert d.next_message() == Rread(1, bytes(100))


def test_dialect_switch_after_version() -> None:
    attach = Tattach(2, 0, 0xFFFFFFFF, "u", "", 7)
    d = Decoder()
    d.feed(encode(Tversion(0xFFFF, 65536, "9P2000.L"), V) + encode(attach, L))
    assert d.next_message() == Tversion(0xFFFF, 65536, "9P2000.L")
    d.dialect = L
    d.max_size = 65536
    assert d.next_message() == attach


def test_protocol_error_consumes_the_frame_and_decoding_continues() -> None:
    bad_type = (7).to_bytes(4, "little") + b"\x01" + (5).to_bytes(2, "little")
    garbage = encode(Tclunk(6, 1), V)[:-1] + b"\x00\x00"  # trailing byte
    garbage = (len(garbage)).to_bytes(4, "little") + garbage[4:]
    l_only = encode(Tlopen(8, 1, 0), L)  # not valid in 9P2000
    good = encode(Twalk(9, 1, 2, ("a",)), V)
    d = Decoder(V)
    d.feed(bad_type + garbage + l_only + good)
    tags = []
    for _ in range(3):
        with pytest.raises(ProtocolError) as info:
            d.next_message()
        assert not isinstance(info.value, MessageTooLarge)
        tags.append(info.value.tag)
    assert tags == [5, 6, 8]
    assert d.next_message() == Twalk(9, 1, 2, ("a",))
    assert d.next_message() is None


def test_incomplete_frame_returns_none_until_complete() -> None:
    frame = encode(Twalk(1, 2, 3, ("x", "y")), V)
    d = Decoder()
    for i in range(len(frame) - 1):
        d.feed(frame[i : i + 1])
        assert d.next_message() is None
    d.feed(frame[-1:])
    assert d.next_message() == Twalk(1, 2, 3, ("x", "y"))
    assert HEADER_SIZE == 7


def test_feed_accepts_empty_and_bytearray() -> None:
    d = Decoder()
    d.feed(b"")
    d.feed(bytearray(encode(Tclunk(1, 2), V)))
    assert list(d.messages()) == [Tclunk(1, 2)]
