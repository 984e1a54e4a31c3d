"""Hypothesis property tests: random messages round-trip in every dialect,
and arbitrary bytes never break the decoder's contract."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datakit.ninep import (
    Decoder,
    Dialect,
    Dirent,
    Message,
    MessageTooLarge,
    NinepError,
    ProtocolError,
    Qid,
    Stat,
    decode,
    decode_dirents,
    decode_stats,
    encode,
    encode_dirent,
    encode_stat,
)
from datakit.ninep.codec import LAYOUTS

from .samples import dialects_for

# The machine may be shared and loaded: judge correctness, not speed.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
_INTS = {"b": 8, "h": 16, "i": 32, "q": 64, "u": 32}
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
qids = st.builds(
    Qid, st.integers(0, 2**8 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
)


def uint(bits: int) -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), st.just(2**bits - 1), st.integers(0, 2**bits - 1))


def stats(dialect: Dialect) -> st.SearchStrategy[Stat]:
    base = st.builds(
        Stat, uint(16), uint(32), qids, uint(32), uint(32), uint(32), uint(64),
        texts, texts, texts, texts,
    )  # fmt: skip
    if dialect is Dialect.V2000:
        return base
    return st.builds(
        lambda s, e, a, b, c: dataclasses.replace(s, extension=e, n_uid=a, n_gid=b, n_muid=c),
        base, texts, uint(32), uint(32), uint(32),
    )  # fmt: skip


def field(code: str, dialect: Dialect, default: Any) -> st.SearchStrategy[Any]:
    if code in "ue" and dialect is Dialect.V2000:
        return st.just(default)
    if code in _INTS:
        return uint(_INTS[code])
    if code == "S":
        return stats(dialect)
    return {
        "s": texts,
        "e": texts,
        "Q": qids,
        "W": st.lists(texts, max_size=16).map(tuple),
        "X": st.lists(qids, max_size=16).map(tuple),
        "D": st.binary(max_size=2000),
    }[code]


@st.composite
def messages(draw: st.DrawFn) -> tuple[Message, Dialect]:
    cls = draw(st.sampled_from(sorted(LAYOUTS, key=lambda c: c.TYPE)))
    dialect = draw(st.sampled_from(dialects_for(cls)))
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    args = [draw(uint(16))]
    for code, f in zip(LAYOUTS[cls], fields[1:], strict=True):
        args.append(draw(field(code, dialect, f.default)))
    return cls(*args), dialect


@settings(relaxed, max_examples=800)
@given(messages())
def test_round_trip(pair: tuple[Message, Dialect]) -> None:
    msg, dialect = pair
    frame = encode(msg, dialect)
    assert decode(frame, dialect) == msg
    dec = Decoder(dialect, max_size=len(frame))
    dec.feed(frame[:5])
    assert dec.next_message() is None
    dec.feed(frame[5:])
    assert dec.next_message() == msg


@relaxed
@given(
    st.sampled_from(list(Dialect)).flatmap(
        lambda d: st.tuples(st.just(d), st.lists(stats(d), max_size=4))
    )
)
def test_stat_runs(pair: tuple[Dialect, list[Stat]]) -> None:
    dialect, records = pair
    assert decode_stats(b"".join(encode_stat(s, dialect) for s in records), dialect) == records


@relaxed
@given(st.lists(st.builds(Dirent, qids, uint(64), uint(8), texts), max_size=6))
def test_dirent_runs(entries: list[Dirent]) -> None:
    assert decode_dirents(b"".join(encode_dirent(d) for d in entries)) == entries


@settings(relaxed, max_examples=600)
@given(st.binary(max_size=200), st.sampled_from(list(Dialect)))
def test_arbitrary_bytes(data: bytes, dialect: Dialect) -> None:
    for parse in (
        lambda: decode(data, dialect),
        lambda: decode_stats(data, dialect),
        lambda: decode_dirents(data),
    ):
        with contextlib.suppress(NinepError):
            parse()
    dec = Decoder(dialect)
    dec.feed(data)
    try:
        while (msg := dec.next_message()) is not None:
            # whatever is accepted re-encodes canonically
            assert isinstance(encode(msg, dialect), bytes)
    except MessageTooLarge:
        pass
    except ProtocolError:
        pass
