"""Frame encode/decode: round trips, hand-written wire vectors, dialect rules
and rejection of malformed frames."""

from __future__ import annotations

import dataclasses

import pytest

from datakit import ninep
from datakit.ninep import (
    DMDIR,
    EPROTO,
    GETATTR_BASIC,
    NOFID,
    NONUNAME,
    NOTAG,
    QTDIR,
    Dialect,
    EncodeError,
    Message,
    ProtocolError,
    Qid,
    Rerror,
    Rlerror,
    Rread,
    Rstat,
    Rversion,
    Rwalk,
    Tattach,
    Tauth,
    Tclunk,
    Tcreate,
    Tgetattr,
    Tlopen,
    Tread,
    Tversion,
    Twalk,
    Twrite,
    decode,
    encode,
)
from datakit.ninep.codec import LAYOUTS

from .samples import all_samples, sample, sample_stat

V, U, L = Dialect.V2000, Dialect.U, Dialect.L

SAMPLES = list(all_samples())


def _id(value: object) -> str:
    if isinstance(value, Message):
        return type(value).__name__
    if isinstance(value, Dialect):
        return value.value
    return ""


@pytest.mark.parametrize(("msg", "dialect"), SAMPLES, ids=_id)
def test_round_trip_every_message_every_dialect(msg: Message, dialect: Dialect) -> None:
    frame = encode(msg, dialect)
    assert int.from_bytes(frame[:4], "little") == len(frame)
    assert frame[4] == msg.TYPE
    assert int.from_bytes(frame[5:7], "little") == msg.tag
    assert decode(frame, dialect) == msg
    # memoryview and bytearray inputs decode the same
    assert decode(memoryview(frame), dialect) == msg
    assert decode(bytearray(frame), dialect) == msg


def test_every_message_class_has_a_layout_and_a_public_name() -> None:
    classes = {
        v
        for v in vars(ninep).values()
        if isinstance(v, type) and issubclass(v, Message) and v is not Message
    }
    assert classes == set(LAYOUTS)
    assert len({c.TYPE for c in classes}) == len(classes) == 66
    for cls in classes:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        assert fields[0].name == "tag"
        assert len(LAYOUTS[cls]) == len(fields) - 1, cls
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert hasattr(cls, "__slots__")


def test_messages_are_frozen() -> None:
    m = Tclunk(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.fid = 3  # type: ignore[misc]


# -- hand-written vectors (from the 9P manual pages / diod protocol notes) --


def h(s: str) -> bytes:
    return bytes.fromhex(s)


VECTORS: list[tuple[Message, Dialect, bytes]] = [
    (
        Tversion(NOTAG, 8192, "9P2000"),
        V,
        h("13000000 64 ffff 00200000 0600 395032303030"),
    ),
    (
        Rversion(NOTAG, 8192, "9P2000.L"),
        L,
        h("15000000 65 ffff 00200000 0800 395032303030 2e4c"),
    ),
    (Tclunk(1, 2), V, h("0b000000 78 0100 02000000")),
    (
        Twalk(1, 0, 1, ("a", "bc")),
        V,
        h("18000000 6e 0100 00000000 01000000 0200 0100 61 0200 6263"),
    ),
    (Rwalk(1, (Qid(QTDIR, 0, 1),)), V, h("16000000 6f 0100 0100 80 00000000 0100000000000000")),
    (Rerror(1, "x", 2), V, h("0a000000 6b 0100 0100 78")),  # no errno in 9P2000
    (Rerror(1, "x", 2), U, h("0e000000 6b 0100 0100 78 02000000")),
    (Rlerror(1, 2), L, h("0b000000 07 0100 02000000")),
    (
        Tattach(1, 0, NOFID, "u", "", 1000),
        U,
        h("18000000 68 0100 00000000 ffffffff 0100 75 0000 e8030000"),
    ),
    (Tattach(1, 0, NOFID, "u", ""), V, h("14000000 68 0100 00000000 ffffffff 0100 75 0000")),
    (Rread(1, b"hi"), V, h("0d000000 75 0100 02000000 6869")),
    (Twrite(3, 7, 1, b"z"), V, h("18000000 76 0300 07000000 0100000000000000 01000000 7a")),
    (Tread(3, 7, 2**64 - 1, 4096), V, h("17000000 74 0300 07000000 ffffffffffffffff 00100000")),
    (Tgetattr(1, 1, GETATTR_BASIC), L, h("13000000 18 0100 01000000 ff07000000000000")),
    (Tlopen(1, 1, 0o100002), L, h("0f000000 0c 0100 01000000 02800000")),
    (
        Tcreate(1, 5, "d", DMDIR | 0o755, 0),
        V,
        h("13000000 72 0100 05000000 0100 64 ed010080 00"),
    ),
    (
        Tcreate(1, 5, "l", 0x02000000 | 0o777, 0, "t"),
        U,
        h("16000000 72 0100 05000000 0100 6c ff010002 00 0100 74"),
    ),
]


@pytest.mark.parametrize(("msg", "dialect", "wire"), VECTORS, ids=_id)
def test_known_vectors(msg: Message, dialect: Dialect, wire: bytes) -> None:
    assert encode(msg, dialect) == wire
    if isinstance(msg, Rerror) and dialect is V:
        assert decode(wire, dialect) == dataclasses.replace(msg, errno=0)
    else:
        assert decode(wire, dialect) == msg


# -- dialect rules --


def test_extension_fields_only_on_the_wire_in_u_and_l() -> None:
    msg = Tauth(1, 2, "user", "tree", 42)
    short = encode(msg, V)
    assert len(encode(msg, U)) == len(encode(msg, L)) == len(short) + 4
    assert decode(short, V) == Tauth(1, 2, "user", "tree", NONUNAME)
    stat_v = encode(Rstat(1, sample_stat(V, big=True)), V)
    stat_u = encode(Rstat(1, sample_stat(U, big=True)), U)
    assert len(stat_u) - len(stat_v) == 2 + len("→ target".encode()) + 12


@pytest.mark.parametrize("dialect", [V, U])
def test_l_only_messages_are_refused_outside_l(dialect: Dialect) -> None:
    with pytest.raises(EncodeError):
        encode(Tlopen(1, 1, 0), dialect)
    frame = encode(Tlopen(9, 1, 0), L)
    with pytest.raises(ProtocolError) as info:
        decode(frame, dialect)
    assert info.value.tag == 9


def test_data_accepts_any_bytes_like() -> None:
    data = bytes(range(200))
    frame = encode(Rread(1, memoryview(data)), V)  # type: ignore[arg-type]
    assert frame == encode(Rread(1, bytearray(data)), V)  # type: ignore[arg-type]
    assert decode(frame, V) == Rread(1, data)
    assert type(decode(frame, V).data) is bytes  # type: ignore[attr-defined]


# -- encode errors --


@pytest.mark.parametrize(
    "msg",
    [
        Tclunk(1, 2**32),
        Tclunk(2**16, 1),
        Tclunk(1, -1),
        Tread(1, 1, 2**64, 1),
        Twalk(1, 1, 2, tuple("abcdefghijklmnopq")),  # 17 names
        Rwalk(1, (Qid(0, 0, 0),) * 17),
        Tversion(1, 1, "x" * 70000),
        Tversion(1, 1, "\ud800"),  # lone surrogate is not UTF-8
        Rstat(1, dataclasses.replace(sample_stat(V, big=True), mode=2**32)),
    ],
    ids=lambda m: type(m).__name__,
)
def test_unencodable_values_raise_encode_error(msg: Message) -> None:
    with pytest.raises(EncodeError):
        encode(msg, U)
    assert issubclass(EncodeError, ValueError)


def test_unknown_object_raises_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode(Qid(0, 0, 0), V)  # type: ignore[arg-type]


# -- decode errors --


def _frame(type_byte: int, tag: int, body: bytes) -> bytes:
    return (
        (7 + len(body)).to_bytes(4, "little")
        + bytes([type_byte])
        + tag.to_bytes(2, "little")
        + body
    )


@pytest.mark.parametrize(
    ("frame", "tag"),
    [
        (b"", None),
        (b"\x07\x00\x00", None),
        (_frame(1, 5, b""), 5),  # unknown type
        (_frame(106, 5, b""), 5),  # Terror does not exist
        (_frame(120, 5, b"\x01\x00\x00"), 5),  # truncated fid
        (_frame(120, 5, b"\x01\x00\x00\x00\x00"), 5),  # trailing byte
        (_frame(121, 5, b"\x00"), 5),  # trailing byte in empty body
        (_frame(100, 5, b"\x00\x20\x00\x00\x09\x00abc"), 5),  # string past end
        (_frame(110, 5, b"\x00" * 8 + b"\x11\x00" + b"\x01\x00a" * 17), 5),  # 17 wnames
        (_frame(111, 5, b"\x11\x00" + b"\x00" * 13 * 17), 5),  # 17 qids
        (_frame(117, 5, b"\x05\x00\x00\x00ab"), 5),  # Rread count past end
        (_frame(125, 5, b"\x02\x00\x00\x00"), 5),  # Rstat with a bogus record
        (_frame(100, 5, b"\x00\x20\x00\x00\x06\x009P2000") + b"x", 5),  # size != len
    ],
)
def test_malformed_frames_raise_protocol_error_with_tag(frame: bytes, tag: int | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frame, U)
    assert info.value.tag == tag


def test_rstat_length_must_match_record() -> None:
    good = encode(Rstat(1, sample_stat(V, big=False)), V)
    # Decoding a 9P2000 stat as .u fails cleanly (record lacks the .u fields).
    with pytest.raises(ProtocolError):
        decode(good, U)
    bad = bytearray(good)
    bad[7] += 1  # n[2] one larger than the record
    bad = bytearray((len(bad) + 1).to_bytes(4, "little")) + bad[4:] + b"\x00"
    with pytest.raises(ProtocolError):
        decode(bytes(bad), V)


def test_errno_constant_for_protocol_errors() -> None:
    assert EPROTO == 71


def test_big_sample_sizes() -> None:
    frame = encode(sample(Rread, V, big=True), V)
    assert len(frame) == 7 + 4 + 8192


# -- names and targets are bytes (issue #8, point 4) --

RAW = b"\xff\xfe-latin1"  # legal in git and on Linux, not UTF-8
NAME = RAW.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("msg", "dialect"),
    [
        (Twalk(1, 0, 1, ("d", NAME)), V),
        (Tcreate(1, 0, NAME, 0o644, 1, ""), U),
        (ninep.Tlcreate(1, 0, NAME, 0, 0o644, 0), L),
        (ninep.Tmkdir(1, 0, NAME, 0o755, 0), L),
        (ninep.Tsymlink(1, 0, NAME, "\udc80/t\udcff", 0), L),
        (ninep.Trenameat(1, 0, NAME, 0, NAME + "2"), L),
        (ninep.Rreadlink(1, NAME), L),
        (Rstat(1, dataclasses.replace(sample_stat(U, big=False), name=NAME, extension=NAME)), U),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Message) else v.value,
)
def test_names_that_are_not_utf8_travel_as_their_bytes(msg: Message, dialect: Dialect) -> None:
    frame = encode(msg, dialect)
    assert RAW in frame  # the exact bytes on the wire, not a replacement
    assert decode(frame, dialect) == msg


def test_dirents_and_stats_keep_names_that_are_not_utf8() -> None:
    dirent = ninep.Dirent(Qid(0, 0, 7), 1, 8, NAME)
    assert ninep.decode_dirents(ninep.encode_dirent(dirent)) == [dirent]
    for dialect in (V, U):
        stat = dataclasses.replace(sample_stat(dialect, big=False), name=NAME)
        assert ninep.decode_stats(ninep.encode_stat(stat, dialect), dialect) == [stat]
