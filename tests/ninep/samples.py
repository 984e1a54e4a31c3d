"""Sample messages for every message class and dialect, derived from the
codec's layout table so that a new message type is covered automatically."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from datakit.ninep import Dialect, Message, Qid, Stat
from datakit.ninep.codec import LAYOUTS

U8, U16, U32, U64 = 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
MAX_INT = {"b": U8, "h": U16, "i": U32, "q": U64, "u": U32}

ALL_DIALECTS = tuple(Dialect)


def dialects_for(cls: type[Message]) -> tuple[Dialect, ...]:
    """9P2000.L-only messages (type < 100) exist only in the .L dialect."""
    return (Dialect.L,) if cls.TYPE < 100 else ALL_DIALECTS


def extended(dialect: Dialect) -> bool:
    return dialect is not Dialect.V2000


def sample_stat(dialect: Dialect, big: bool) -> Stat:
    if not big:
        base = Stat(0, 0, Qid(0, 0, 0), 0, 0, 0, 0, "", "", "", "")
    else:
        base = Stat(
            U16, U32, Qid(U8, U32, U64), U32, U32, U32, U64,
            "ファイル名 ✓", "root", "root", "none",
        )  # fmt: skip
    if extended(dialect):
        if big:
            return dataclasses.replace(
                base, extension="→ target", n_uid=U32 - 1, n_gid=0, n_muid=12345
            )
        return dataclasses.replace(base, n_uid=0, n_gid=0, n_muid=0)
    return base


def _value(code: str, dialect: Dialect, big: bool, field: dataclasses.Field[Any]) -> Any:
    if code in "ue" and not extended(dialect):
        return field.default
    if code in MAX_INT:
        return MAX_INT[code] if big else 0
    if code in "se":
        return "ünïcødé/ñame ☃ 𝄞" if big else ""
    if code == "Q":
        return Qid(U8, U32, U64) if big else Qid(0, 0, 0)
    if code == "W":
        return tuple(f"n{i}é" for i in range(16)) if big else ()
    if code == "X":
        return tuple(Qid(i, i * 7, U64 - i) for i in range(16)) if big else ()
    if code == "D":
        return bytes(range(256)) * 32 if big else b""
    if code == "S":
        return sample_stat(dialect, big)
    raise AssertionError(code)


def sample(cls: type[Message], dialect: Dialect, big: bool) -> Message:
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    args: list[Any] = [U16 if big else 0]
    for code, field in zip(LAYOUTS[cls], fields[1:], strict=True):
        args.append(_value(code, dialect, big, field))
    return cls(*args)


def all_samples() -> Iterator[tuple[Message, Dialect]]:
    for cls in LAYOUTS:
        for dialect in dialects_for(cls):
            for big in (False, True):
                yield sample(cls, dialect, big), dialect
