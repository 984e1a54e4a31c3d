#!/usr/bin/env python3
"""Micro-benchmark of the 9P codec (``datakit.ninep``).

Prints nanoseconds per operation for the two messages that dominate real
traffic -- ``Rread`` with 8 KiB of data (bulk reads) and ``Twalk`` with three
names (Linux walks on nearly every path lookup) -- plus the cost of copying
8 KiB (``bytes(8192)``) as a baseline: an Rread encode or decode cannot be
cheaper than one copy of its payload, so the ratio to that row says how much
codec overhead there is.

Each figure is the best of several runs of a tight loop timed with
``time.perf_counter_ns``; best-of filters out scheduler noise on a shared
machine. This is a script that prints a table, not a timed test.

    python bench/codec_bench.py [--iterations N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from datakit.ninep import Decoder, Dialect, Rread, Twalk, decode, encode


def best_ns(fn: Callable[[], object], iterations: int, repeat: int) -> float:
    """Best-of-``repeat`` mean time per call, loop overhead subtracted."""

    def loop(f: Callable[[], object]) -> float:
        rng = range(iterations)
        start = time.perf_counter_ns()
        for _ in rng:
            f()
        return (time.perf_counter_ns() - start) / iterations

    def nothing() -> None:
        return None

    overhead = min(loop(nothing) for _ in range(repeat))
    return max(0.0, min(loop(fn) for _ in range(repeat)) - overhead)


def main() -> None:
    parser = argparse.ArgumentParser(description="9P codec micro-benchmark")
    parser.add_argument("--iterations", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n, r = args.iterations, args.repeat
    dialect = Dialect.L

    rread = Rread(1, bytes(range(256)) * 32)
    rread_frame = encode(rread, dialect)
    twalk = Twalk(2, 1, 2, ("branch", "master", "head"))
    twalk_frame = encode(twalk, dialect)
    assert decode(rread_frame, dialect) == rread and decode(twalk_frame, dialect) == twalk

    stream_dec = Decoder(dialect, max_size=len(rread_frame))

    def decoder_rread() -> object:
        stream_dec.feed(rread_frame)
        return stream_dec.next_message()

    payload = bytearray(rread.data)
    rows: list[tuple[str, float]] = [
        ("baseline: bytes(8192)", best_ns(lambda: bytes(8192), n, r)),
        ("baseline: bytes(8 KiB bytearray)", best_ns(lambda: bytes(payload), n, r)),
        ("Rread 8 KiB  encode", best_ns(lambda: encode(rread, dialect), n, r)),
        ("Rread 8 KiB  decode", best_ns(lambda: decode(rread_frame, dialect), n, r)),
        ("Rread 8 KiB  Decoder.feed+next", best_ns(decoder_rread, n, r)),
        ("Twalk 3 names encode", best_ns(lambda: encode(twalk, dialect), n, r)),
        ("Twalk 3 names decode", best_ns(lambda: decode(twalk_frame, dialect), n, r)),
    ]
    copy_ns = rows[0][1]
    print(f"{'operation':<34} {'ns/op':>10} {'x bytes(8192)':>14}")
    print("-" * 60)
    for name, ns in rows:
        ratio = f"{ns / copy_ns:.2f}" if copy_ns else "-"
        print(f"{name:<34} {ns:>10.0f} {ratio:>14}")
    print(f"\n({n} iterations, best of {r}, loop overhead subtracted, dialect {dialect.value})")


if __name__ == "__main__":
    main()
