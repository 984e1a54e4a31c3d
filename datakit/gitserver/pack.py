"""Packs sent to Git clients, written object by object as they are read
from the store: a clone of any size holds one object at a time (and the
list of object ids), never the pack."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Sequence

from datakit.store import Store

# zlib level of the objects sent. git's default (-1, i.e. 6) costs about
# three times level 1's CPU for a few per cent fewer bytes on a LAN, and the
# CPU here is the event loop's neighbour (the GIL).
SEND_COMPRESSION = 1


# The pack goes out in pieces of this size: the most one side-band-64k
# pkt-line carries (one pkt-line and one send per object was a quarter of a
# clone's time).
PIECE = 65515
BLOB = 3
# Blobs bigger than this are read and deflated STREAM_CHUNK at a time, so a
# clone holds no whole big file in memory.
STREAM_MIN = 4 << 20
STREAM_CHUNK = 1 << 20


class MissingObject(Exception):
    """An object the pack needs is not in the store (a corrupt history)."""


def object_header(type_num: int, size: int) -> bytes:
    """A pack entry's header: type and size, 4 bits then 7 per byte, low
    bits first, the high bit saying another byte follows (gitformat-pack)."""
    out = bytearray()
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def deflate_small(raw: bytes) -> bytes:
    """``raw`` deflated with a window no bigger than it needs: zlib sets up
    (and clears) the whole window for every call, which for the typical
    few-hundred-byte tree or commit cost three times the compression
    itself. A reader takes any window size from the stream's header."""
    wbits = min(15, max(9, len(raw).bit_length() + 1))
    return zlib.compress(raw, SEND_COMPRESSION, wbits)


def send_pack(write: Callable[[bytes], object], store: Store, ids: Sequence[bytes]) -> None:
    """Write a pack of the objects ``ids`` (hex) through ``write``, in
    pieces of at most PIECE bytes.

    Every object whole (no deltas), each deflated with one zlib call: our
    own few lines rather than dulwich's writer, which made a compressor
    object per object and a CRC of every piece for an index nobody reads
    here (40% of a clone's time). A big blob is read and deflated a chunk
    at a time."""
    checksum = hashlib.sha1()
    piece = bytearray(b"PACK" + struct.pack(">II", 2, len(ids)))

    def send_full_pieces() -> None:
        whole = len(piece) - len(piece) % PIECE
        for start in range(0, whole, PIECE):
            data = bytes(piece[start : start + PIECE])
            checksum.update(data)
            write(data)
        del piece[:whole]

    for oid in ids:
        sha = oid.decode("ascii")
        if store.object_type(sha) == "blob" and store.blob_size(sha) > STREAM_MIN:
            reader = store.blob_reader(sha)
            piece += object_header(BLOB, reader.size)
            deflate = zlib.compressobj(SEND_COMPRESSION)
            for offset in range(0, reader.size, STREAM_CHUNK):
                piece += deflate.compress(reader.read(offset, STREAM_CHUNK))
                send_full_pieces()
            piece += deflate.flush()
        else:
            found = store.raw_object(sha)
            if found is None:
                raise MissingObject(f"object {sha} is missing")
            type_num, raw = found
            piece += object_header(type_num, len(raw))
            piece += deflate_small(raw)
        if len(piece) >= PIECE:
            send_full_pieces()
    checksum.update(piece)
    piece += checksum.digest()
    for start in range(0, len(piece), PIECE):
        write(bytes(piece[start : start + PIECE]))
