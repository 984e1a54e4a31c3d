"""Stat records (9P2000 vs 9P2000.u) and 9P2000.L dirents."""

from __future__ import annotations

import dataclasses

import pytest

from datakit.ninep import (
    DMDIR,
    DT_DIR,
    DT_REG,
    NONUNAME,
    QTDIR,
    Dialect,
    Dirent,
    EncodeError,
    ProtocolError,
    Qid,
    Stat,
    decode_dirents,
    decode_stats,
    encode_dirent,
    encode_stat,
)

from .samples import sample_stat

V, U, L = Dialect.V2000, Dialect.U, Dialect.L

FILE = Stat(0, 0, Qid(0, 0, 1), 0o664, 0, 0, 5, "f", "root", "root", "none")
FILE_WIRE_V = bytes.fromhex(
    "3c00 0000 00000000 00 00000000 0100000000000000 b4010000 00000000 00000000"
    " 0500000000000000 0100 66 0400 726f6f74 0400 726f6f74 0400 6e6f6e65"
)
FILE_U = dataclasses.replace(FILE, n_uid=0, n_gid=0, n_muid=0)
FILE_WIRE_U = (
    bytes([0x4A, 0x00]) + FILE_WIRE_V[2:] + bytes.fromhex("0000 00000000 00000000 00000000")
)


def test_stat_known_bytes_9p2000() -> None:
    assert encode_stat(FILE, V) == FILE_WIRE_V
    assert decode_stats(FILE_WIRE_V, V) == [FILE]


@pytest.mark.parametrize("dialect", [U, L])
def test_stat_known_bytes_9p2000u(dialect: Dialect) -> None:
    assert encode_stat(FILE_U, dialect) == FILE_WIRE_U
    assert decode_stats(FILE_WIRE_U, dialect) == [FILE_U]


def test_stat_9p2000_drops_and_defaults_u_fields() -> None:
    s = dataclasses.replace(FILE, extension="target", n_uid=1)
    assert encode_stat(s, V) == FILE_WIRE_V
    (back,) = decode_stats(FILE_WIRE_V, V)
    assert (back.extension, back.n_uid, back.n_gid, back.n_muid) == (
        "",
        NONUNAME,
        NONUNAME,
        NONUNAME,
    )


@pytest.mark.parametrize("dialect", [V, U, L])
def test_stat_run_round_trip(dialect: Dialect) -> None:
    stats = [
        sample_stat(dialect, big=False),
        sample_stat(dialect, big=True),
        dataclasses.replace(sample_stat(dialect, big=True), mode=DMDIR | 0o775, name="dir"),
    ]
    data = b"".join(encode_stat(s, dialect) for s in stats)
    assert decode_stats(data, dialect) == stats
    assert decode_stats(memoryview(data), dialect) == stats
    assert decode_stats(b"", dialect) == []


def test_stat_dialect_mismatch_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_stats(FILE_WIRE_V, U)  # too short for the .u fields
    with pytest.raises(ProtocolError):
        decode_stats(FILE_WIRE_U, V)  # 14 unexplained trailing bytes


@pytest.mark.parametrize("cut", [1, 2, 10, 40, 60])
def test_truncated_stat_run(cut: int) -> None:
    with pytest.raises(ProtocolError):
        decode_stats(FILE_WIRE_V + FILE_WIRE_V[:cut], V)


def test_stat_name_that_is_not_utf8_is_kept_as_bytes() -> None:
    wire = bytearray(FILE_WIRE_V)
    wire[wire.index(b"f")] = 0xFF
    (st,) = decode_stats(bytes(wire), V)
    assert st.name.encode("utf-8", "surrogateescape") == b"\xff"
    assert encode_stat(st, V) == bytes(wire)


def test_stat_value_out_of_range() -> None:
    with pytest.raises(EncodeError):
        encode_stat(dataclasses.replace(FILE, length=-1), V)


DIR_A = Dirent(Qid(QTDIR, 0, 1), 1, DT_DIR, "a")
DIR_A_WIRE = bytes.fromhex("80 00000000 0100000000000000 0100000000000000 04 0100 61")


def test_dirent_known_bytes() -> None:
    assert encode_dirent(DIR_A) == DIR_A_WIRE
    assert decode_dirents(DIR_A_WIRE) == [DIR_A]


def test_dirent_run_round_trip() -> None:
    entries = [
        DIR_A,
        Dirent(Qid(0, 2**32 - 1, 2**64 - 1), 2**64 - 1, DT_REG, "ünïcødé ☃"),
        Dirent(Qid(0, 0, 0), 0, 0, ""),
    ]
    data = b"".join(encode_dirent(d) for d in entries)
    assert decode_dirents(data) == entries
    assert decode_dirents(bytearray(data)) == entries
    assert decode_dirents(b"") == []


@pytest.mark.parametrize("cut", range(1, len(DIR_A_WIRE)))
def test_truncated_dirent(cut: int) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_dirents(DIR_A_WIRE + DIR_A_WIRE[:cut])
    assert info.value.tag is None


def test_dirent_errors() -> None:
    with pytest.raises(ProtocolError):
        decode_dirents(DIR_A_WIRE[:-1])  # name runs past the end
    with pytest.raises(EncodeError):
        encode_dirent(Dirent(Qid(0, 0, 0), 0, 256, "x"))
