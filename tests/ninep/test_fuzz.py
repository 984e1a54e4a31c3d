"""Deterministic fuzzing: the decoder returns messages or raises NinepError,
whatever bytes it is given.

The mutation engine lives in ``fuzz/fuzz_decoder.py`` (the long-running
target); this test runs a fixed-seed slice of the same loop so CI exercises
exactly what the fuzzer does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import time
from pathlib import Path
from types import ModuleType

import pytest

from datakit.ninep import (
    Decoder,
    Dialect,
    Message,
    MessageTooLarge,
    NinepError,
    ProtocolError,
    decode,
)

FUZZ_SCRIPT = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_decoder.py"


@pytest.fixture(scope="module")
def fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_decoder", FUZZ_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_100k_mutated_frames(fuzz: ModuleType) -> None:
    start = time.monotonic()
    done = fuzz.run(iterations=100_000, seconds=None, seed=20240611, quiet=True)
    assert done >= 100_000
    assert time.monotonic() - start < 60  # normally a few seconds


def test_random_garbage_streams() -> None:
    rng = random.Random(1234)
    for i in range(2_000):
        dialect = list(Dialect)[i % 3]
        dec = Decoder(dialect, max_size=rng.choice((7, 100, 8216, 1 << 20)))
        data = rng.randbytes(rng.randrange(300))
        if rng.random() < 0.5 and len(data) >= 4:
            # plausible sizes make the decoder look inside the frames
            data = rng.randrange(7, 64).to_bytes(4, "little") + data[4:]
        with contextlib.suppress(NinepError):
            decode(data, dialect)
        pos = 0
        while pos < len(data):
            step = rng.randrange(1, 50)
            dec.feed(data[pos : pos + step])
            pos += step
            try:
                while (msg := dec.next_message()) is not None:
                    assert isinstance(msg, Message)
            except MessageTooLarge:
                break
            except ProtocolError:
                continue


def test_every_prefix_and_single_byte_corruption(fuzz: ModuleType) -> None:
    rng = random.Random(5)
    for dialect in Dialect:
        for _ in range(40):
            frame = fuzz.encode(fuzz.random_message(rng, dialect), dialect)
            for cut in range(len(frame) if len(frame) < 200 else 200):
                assert fuzz.check_frame(frame[:cut], dialect) is None
            for pos in range(min(len(frame), 120)):
                bad = bytearray(frame)
                bad[pos] ^= 0xFF
                fuzz.check_frame(bytes(bad), dialect)
