"""Writing a batch of new objects as one pack file (with its v2 index).

A commit of many files would otherwise write and fsync one loose object per
file: ten thousand fdatasyncs for a 10,000-file transaction. A pack is one
file and one index, two fsyncs, whatever the count; git reads it like any
pack it made itself (`git fsck --strict` checks both files).

Formats (gitformat-pack(5)): the pack is ``PACK``, version 2, the object
count, then per object a type-and-size header and the zlib-deflated body,
then the SHA-1 of all that. No deltas: the objects are new, and finding
delta bases would cost more than it saves here (`git gc` deltifies later).
The index is ``\\377tOc``, version 2, a 256-entry fan-out table, the sorted
object ids, a CRC-32 of each object's packed bytes, their offsets (31 bits,
or an index into a table of 64-bit offsets past 2 GiB), the pack's checksum
and its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import zlib
from collections.abc import Callable, Sequence

from ._durable import datasync, fsync_dir, new_temporary, write_all

_LARGE_OFFSET = 0x80000000


def _entry_header(type_num: int, size: int) -> bytes:
    """3-bit type and a little-endian base-128 size, 4 bits in the first byte."""
    out = bytearray()
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _stream_pack(
    write: Callable[[bytes], object],
    objects: Sequence[tuple[str, int, bytes]],
    compression: int,
) -> tuple[list[tuple[bytes, int, int]], bytes]:
    """Write the pack piece by piece (a big blob is never held twice over);
    return (binary id, crc32, offset) per object, and the pack's checksum."""
    if len({sha for sha, _, _ in objects}) != len(objects):
        raise ValueError("a pack must not hold an object twice (git rejects it)")
    digest = hashlib.sha1()

    def out(data: bytes) -> None:
        digest.update(data)
        write(data)

    out(b"PACK" + struct.pack(">II", 2, len(objects)))
    offset = 12
    index: list[tuple[bytes, int, int]] = []
    for sha, type_num, raw in objects:
        packed = _entry_header(type_num, len(raw)) + zlib.compress(raw, compression)
        index.append((bytes.fromhex(sha), zlib.crc32(packed), offset))
        out(packed)
        offset += len(packed)
    checksum = digest.digest()
    write(checksum)
    return index, checksum


def encode_pack(
    objects: Sequence[tuple[str, int, bytes]], compression: int
) -> tuple[bytes, list[tuple[bytes, int, int]], bytes]:
    """The pack's bytes, (binary id, crc32, offset) per object, and the checksum."""
    parts: list[bytes] = []
    index, checksum = _stream_pack(parts.append, objects, compression)
    return b"".join(parts), index, checksum


def encode_index(entries: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
    entries = sorted(entries)
    fanout = [0] * 256
    for sha, _, _ in entries:
        fanout[sha[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    small: list[int] = []
    large: list[int] = []
    for _, _, offset in entries:
        if offset < _LARGE_OFFSET:
            small.append(offset)
        else:
            small.append(_LARGE_OFFSET | len(large))
            large.append(offset)
    body = b"".join(
        [
            b"\377tOc",
            struct.pack(">I", 2),
            struct.pack(">256I", *fanout),
            b"".join(sha for sha, _, _ in entries),
            struct.pack(f">{len(entries)}I", *(crc for _, crc, _ in entries)),
            struct.pack(f">{len(small)}I", *small),
            struct.pack(f">{len(large)}Q", *large),
            pack_checksum,
        ]
    )
    return body + hashlib.sha1(body).digest()


def write_pack(
    objects_dir: str, objects: Sequence[tuple[str, int, bytes]], compression: int
) -> str:
    """Durably add ``objects`` (id, type, raw body) to the repository as one
    pack (written under a temporary name and fsynced, then installed by
    :func:`install_pack`); returns the pack's path."""
    pack_dir = os.path.join(objects_dir, "pack")
    os.makedirs(pack_dir, exist_ok=True)
    fd, tmp_pack = new_temporary(pack_dir, "pack")
    try:
        try:
            entries, checksum = _stream_pack(lambda b: write_all(fd, b), objects, compression)
            datasync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_pack)
        raise
    return install_pack(pack_dir, tmp_pack, entries, checksum)


def install_pack(
    pack_dir: str, tmp_pack: str, entries: list[tuple[bytes, int, int]], checksum: bytes
) -> str:
    """Write the index of the durable pack ``tmp_pack`` (in ``pack_dir``)
    and move both into place; returns the pack's path.

    The pack is renamed into place before its index: git (and dulwich) only
    look at a pack that has an index, so a crash never leaves a pack visible
    without all of its bytes. On any error nothing is left behind.
    """
    leftovers = [tmp_pack]  # what to remove if anything fails
    try:
        fd, tmp_idx = new_temporary(pack_dir, "idx")
        leftovers.append(tmp_idx)
        try:
            write_all(fd, encode_index(entries, checksum))
            datasync(fd)
        finally:
            os.close(fd)
        base = os.path.join(pack_dir, f"pack-{checksum.hex()}")
        if os.path.exists(base + ".idx"):
            # The very same pack (its name is its checksum) is already there:
            # keep it, never replace (or, on failure, remove) what git uses.
            for path in leftovers:
                os.unlink(path)
            return base + ".pack"
        os.replace(tmp_pack, base + ".pack")
        leftovers[0] = base + ".pack"  # invisible to git until its index is there
        os.replace(tmp_idx, base + ".idx")
        leftovers.clear()
    except BaseException:
        for path in leftovers:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    fsync_dir(pack_dir)
    return base + ".pack"
