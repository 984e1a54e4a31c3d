"""The sizes in a received pack, checked before any object is inflated whole.

A pack entry declares its size, and a delta declares the size of the object
it makes; dulwich inflates and resolves each object in memory. A few KiB of
zeros deflated can declare and inflate to gigabytes (a decompression bomb),
so before that the pack is walked once with bounded memory: every declared
size, and every delta's result size, must be at most the limit, and each
entry must inflate to exactly the size it declares.

Entry format (gitformat-pack(5)): a type-and-size header (3-bit type, size
in little-endian base-128, 4 bits in the first byte); an offset delta
(type 6) adds a base-128 offset, a reference delta (type 7) a 20-byte id;
then the zlib stream. A delta's data starts with its base's size and its
result's size, both little-endian base-128.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

_OFS_DELTA, _REF_DELTA = 6, 7
_KINDS = (1, 2, 3, 4, _OFS_DELTA, _REF_DELTA)
_CHUNK = 1 << 16


class PackSizeError(ValueError):
    """What is wrong with the pack's sizes."""


class Reader:
    """A pack's bytes from ``read(n)`` (a file's, or a client's socket's),
    parsed from a buffer of at most one chunk."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._buf = b""
        self._pos = 0  # of the next unread byte in _buf

    @property
    def buffered(self) -> int:
        """Bytes read but not parsed yet."""
        return len(self._buf) - self._pos

    def _fill(self) -> None:
        if self._pos == len(self._buf):
            self._buf, self._pos = self._read(_CHUNK), 0
            if not self._buf:
                raise PackSizeError("the pack is truncated")

    def byte(self) -> int:
        self._fill()
        self._pos += 1
        return self._buf[self._pos - 1]

    def take(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._fill()
            part = self._buf[self._pos : self._pos + n - len(out)]
            self._pos += len(part)
            out += part
        return out

    def inflate(self, declared: int, keep: int) -> bytes:
        """Inflate one zlib stream, at most 64 KiB of it at once in memory,
        checking it makes ``declared`` bytes; its first ``keep`` bytes."""
        stream = zlib.decompressobj()
        total, head = 0, b""
        while not stream.eof:
            self._fill()
            try:
                out = stream.decompress(self._buf[self._pos :], _CHUNK)
            except zlib.error as exc:
                raise PackSizeError(f"malformed pack: {exc}") from None
            self._buf, self._pos = stream.unconsumed_tail, 0
            total += len(out)
            if len(head) < keep:
                head += out[: keep - len(head)]
            if total > declared:
                raise PackSizeError("an object inflates to more than its declared size")
        self._buf, self._pos = stream.unused_data + self._buf, 0
        if total != declared:
            raise PackSizeError("an object inflates to less than its declared size")
        return head


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """A delta header's little-endian base-128 number at ``pos``; (value, next)."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise PackSizeError("a delta's header is truncated")
        b = data[pos]
        value |= (b & 0x7F) << shift
        shift += 7
        pos += 1
        if not b & 0x80:
            return value, pos


def check_sizes(path: str, limit: int, alive: Callable[[], None] = lambda: None) -> None:
    """PackSizeError unless every object of the pack at ``path`` (and every
    object a delta makes) is at most ``limit`` bytes; ``alive()`` is called
    before each entry (it raises to stop the walk)."""
    with open(path, "rb") as f:
        read = Reader(f.read)
        _, count = read_header(read)
        walk_entries(read, count, limit, alive)


def read_header(read: Reader) -> tuple[bytes, int]:
    """The pack's header, and the number of entries it declares."""
    header = read.take(12)
    if header[:4] != b"PACK" or header[4:8] not in (b"\0\0\0\2", b"\0\0\0\3"):
        raise PackSizeError("not a pack (a version 2 pack was expected)")
    (count,) = struct.unpack(">I", header[8:])
    return header, int(count)


def walk_entries(read: Reader, count: int, limit: int, alive: Callable[[], None]) -> None:
    """Read ``count`` entries, each inflated a chunk at a time and checked:
    a well-formed header of a known type, a size (and a delta's result
    size) of at most ``limit``, and a stream that makes the declared size."""
    for i in range(count):
        alive()
        b = read.byte()
        kind, size, shift = (b >> 4) & 7, b & 0x0F, 4
        while b & 0x80:
            if shift > 70:
                raise PackSizeError(f"malformed pack: object {i} has a bad header")
            b = read.byte()
            size |= (b & 0x7F) << shift
            shift += 7
        if kind not in _KINDS:
            raise PackSizeError(f"malformed pack: object {i} has an unknown type {kind}")
        if size > limit:
            raise PackSizeError(f"object {i} of the pack is larger than {limit} bytes")
        if kind == _OFS_DELTA:
            for _ in range(10):
                if not read.byte() & 0x80:
                    break
            else:
                raise PackSizeError(f"malformed pack: object {i} has a bad delta offset")
        elif kind == _REF_DELTA:
            read.take(20)
        delta = kind in (_OFS_DELTA, _REF_DELTA)
        head = read.inflate(size, 20 if delta else 0)
        if delta:
            _, pos = varint(head, 0)
            result, _ = varint(head, pos)
            if result > limit:
                raise PackSizeError(f"object {i} of the pack is larger than {limit} bytes")
