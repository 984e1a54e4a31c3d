#!/usr/bin/env python3
"""Long-running fuzz target for the 9P decoder (``datakit.ninep``).

The decoder faces untrusted peers, so for *any* input bytes it must either
return messages or raise a ``NinepError`` subclass -- never crash, hang or
raise anything else. Inputs are valid frames of random messages (built from
the codec's own layout table, so every message type is covered), mutated in
the ways real corruption and hostile peers produce: bit flips, truncation,
bogus size/type/length fields, splices and plain garbage.

An extra oracle: any frame that *does* decode must re-encode to exactly the
same bytes (the wire format has a single canonical encoding, and the decoder
is strict about trailing bytes, so anything else means a lost field).

    python fuzz/fuzz_decoder.py --seconds 600
    python fuzz/fuzz_decoder.py --iterations 1000000 --seed 7
    python fuzz/fuzz_decoder.py --atheris          # coverage-guided, if installed

``tests/ninep/test_fuzz.py`` runs a short deterministic slice of this loop.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import sys
import time
from typing import Any

from datakit.ninep import (
    Decoder,
    Dialect,
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
)
from datakit.ninep.codec import LAYOUTS

DIALECTS = tuple(Dialect)
MAX_SIZE = 1 << 16
_WIDTH = {"b": 8, "h": 16, "i": 32, "q": 64, "u": 32}
_NAMES = ["", "a", "..", ".", "héllo", "☃", "𝄞", "x" * 300, "with space", "\x00"]
_CLASSES = list(LAYOUTS)


def _int(rng: random.Random, bits: int) -> int:
    roll = rng.random()
    if roll < 0.2:
        return 0
    if roll < 0.35:
        return (1 << bits) - 1
    return rng.getrandbits(rng.choice((bits, 8, 3)) if bits > 8 else bits)


def _str(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(_NAMES)
    return "".join(chr(rng.choice((rng.randrange(32, 127), rng.randrange(0xA0, 0xD7FF))))
                   for _ in range(rng.randrange(12)))  # fmt: skip


def _qid(rng: random.Random) -> Qid:
    return Qid(_int(rng, 8), _int(rng, 32), _int(rng, 64))


def random_stat(rng: random.Random, dialect: Dialect) -> Stat:
    st = Stat(
        _int(rng, 16), _int(rng, 32), _qid(rng), _int(rng, 32), _int(rng, 32),
        _int(rng, 32), _int(rng, 64), _str(rng), _str(rng), _str(rng), _str(rng),
    )  # fmt: skip
    if dialect is Dialect.V2000:
        return st
    return dataclasses.replace(
        st, extension=_str(rng), n_uid=_int(rng, 32), n_gid=_int(rng, 32), n_muid=_int(rng, 32)
    )


def random_message(rng: random.Random, dialect: Dialect) -> Message:
    """A valid message of a random type that exists in ``dialect``."""
    while True:
        cls = rng.choice(_CLASSES)
        if cls.TYPE >= 100 or dialect is Dialect.L:
            break
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    args: list[Any] = [_int(rng, 16)]
    for code, field in zip(LAYOUTS[cls], fields[1:], strict=True):
        if code in "ue" and dialect is Dialect.V2000:
            args.append(field.default)
        elif code in _WIDTH:
            args.append(_int(rng, _WIDTH[code]))
        elif code in "se":
            args.append(_str(rng))
        elif code == "Q":
            args.append(_qid(rng))
        elif code == "W":
            args.append(tuple(_str(rng) for _ in range(rng.randrange(17))))
        elif code == "X":
            args.append(tuple(_qid(rng) for _ in range(rng.randrange(17))))
        elif code == "D":
            args.append(rng.randbytes(rng.choice((0, 1, 13, 200, 5000))))
        elif code == "S":
            args.append(random_stat(rng, dialect))
    return cls(*args)


def mutate(rng: random.Random, frame: bytes, other: bytes) -> bytes:
    """Corrupt ``frame`` in one or more of the ways a hostile peer might."""
    data = bytearray(frame)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(11)
        n = len(data)
        if op == 0 and n:  # flip bits
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # random byte values
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:  # truncate
            del data[rng.randrange(n + 1) :]
        elif op == 3:  # append garbage
            data += rng.randbytes(rng.randrange(1, 40))
        elif op == 4 and n >= 4:  # bogus size field
            size = rng.choice((0, 3, 6, 7, n - 1, n + 1, 0xFFFFFFFF, rng.getrandbits(32)))
            data[0:4] = (size & 0xFFFFFFFF).to_bytes(4, "little")
        elif op == 5 and n >= 5:  # other type byte (often a valid one)
            data[4] = rng.choice((rng.randrange(256), rng.choice(_CLASSES).TYPE))
        elif op == 6 and n >= 9:  # huge 16-bit length somewhere (string/count fields)
            pos = rng.randrange(7, n - 1)
            data[pos : pos + 2] = rng.choice((0xFFFF, 0x11, 17, rng.randrange(65536))).to_bytes(
                2, "little"
            )
        elif op == 7 and n > 7:  # delete a run inside the body
            pos = rng.randrange(7, n)
            del data[pos : pos + rng.randrange(1, 8)]
        elif op == 8:  # insert bytes
            pos = rng.randrange(n + 1)
            data[pos:pos] = rng.randbytes(rng.randrange(1, 8))
        elif op == 9:  # splice with another frame
            cut = rng.randrange(n + 1)
            data = data[:cut] + other[rng.randrange(len(other) + 1) :]
        else:  # pure garbage
            data = bytearray(rng.randbytes(rng.randrange(64)))
        if op in (2, 3, 7, 8, 9) and len(data) >= 4 and rng.random() < 0.7:
            # keep the size field consistent so the body parser gets exercised
            data[0:4] = len(data).to_bytes(4, "little")
    return bytes(data)


def check_frame(data: bytes, dialect: Dialect) -> Message | None:
    """Decode one candidate frame; assert the decoder's contract."""
    try:
        msg = decode(data, dialect)
    except NinepError:
        return None
    assert isinstance(msg, Message), msg
    again = encode(msg, dialect)
    assert again == data, (msg, data.hex(), again.hex())
    return msg


def check_stream(rng: random.Random, chunks: list[bytes], dialect: Dialect) -> int:
    """Feed ``chunks`` in random pieces through a Decoder; return messages seen."""
    dec = Decoder(dialect, max_size=MAX_SIZE)
    stream = b"".join(chunks)
    seen = 0
    pos = 0
    while pos < len(stream):
        step = rng.choice((1, 7, 64, 1000, len(stream)))
        dec.feed(stream[pos : pos + step])
        pos += step
        while True:
            try:
                msg = dec.next_message()
            except MessageTooLarge:
                return seen  # stream cannot be resynchronised; a server hangs up
            except ProtocolError:
                continue  # frame consumed; carry on with the next one
            if msg is None:
                break
            assert isinstance(msg, Message)
            seen += 1
    return seen


def check_payload_parsers(data: bytes, dialect: Dialect) -> None:
    for parse in (lambda: decode_stats(data, dialect), lambda: decode_dirents(data)):
        with contextlib.suppress(NinepError):
            parse()


def run(iterations: int | None, seconds: float | None, seed: int, quiet: bool = False) -> int:
    """Run the fuzz loop; returns the number of inputs tried."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds if seconds is not None else None
    done = 0
    decoded = 0
    while (iterations is None or done < iterations) and (
        deadline is None or time.monotonic() < deadline
    ):
        dialect = rng.choice(DIALECTS)
        frames = [encode(random_message(rng, dialect), dialect) for _ in range(4)]
        batch = []
        for frame in frames:
            for _ in range(8):
                bad = mutate(rng, frame, rng.choice(frames))
                if check_frame(bad, rng.choice(DIALECTS)) is not None:
                    decoded += 1
                batch.append(bad)
                done += 1
            # the unmutated frame must round-trip
            assert check_frame(frame, dialect) is not None
            batch.append(frame)
        check_payload_parsers(batch[rng.randrange(len(batch))][7:], dialect)
        rng.shuffle(batch)
        check_stream(rng, batch, dialect)
        if not quiet and done % 100_000 < 32:
            print(f"{done} inputs, {decoded} mutated frames still decoded", file=sys.stderr)
    return done


def _run_atheris() -> None:  # pragma: no cover - optional tool
    import atheris  # type: ignore[import-not-found]

    def one_input(data: bytes) -> None:
        if not data:
            return
        dialect = DIALECTS[data[0] % 3]
        body = data[1:]
        check_frame(body, dialect)
        check_payload_parsers(body, dialect)
        check_stream(random.Random(len(body)), [body], dialect)

    atheris.Setup(sys.argv[:1] + [a for a in sys.argv[1:] if a != "--atheris"], one_input)
    atheris.Fuzz()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument("--iterations", type=int, help="stop after this many inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--atheris", action="store_true", help="use atheris if installed")
    args, _ = parser.parse_known_args()
    if args.atheris:
        _run_atheris()
        return
    if args.seconds is None and args.iterations is None:
        args.seconds = 60.0
    start = time.monotonic()
    done = run(args.iterations, args.seconds, args.seed)
    elapsed = time.monotonic() - start
    print(f"ok: {done} inputs in {elapsed:.1f}s ({done / elapsed:.0f}/s), seed {args.seed}")


if __name__ == "__main__":
    main()
