"""Writing a batch of new objects as one pack file (with its v2 index).

A commit of many files would otherwise write and fsync one loose object per
file: ten thousand fdatasyncs for a 10,000-file transaction. A pack is one
file and one index, two fsyncs, whatever the count; git reads it like any
pack it made itself (`git fsck --strict` checks both files).

The formats are dulwich's to write (gitformat-pack(5)): ``write_pack_data``
streams the pack to a callback, one object at a time, deflating as it goes
(a big blob is never held twice over), and ``write_pack_index_v2`` writes
the index to a file object. What is ours is durability: both go to
temporary files of ours in the pack directory, are fdatasynced, then renamed
into place, pack first (see :func:`install_pack`). No deltas: the objects are
new, and finding delta bases would cost more than it saves here (`git gc`
deltifies later).
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dulwich.object_format import SHA1
from dulwich.pack import UnpackedObject, write_pack_data, write_pack_index_v2

from ._durable import datasync, fsync_dir, new_temporary, write_all
from ._packsizes import varint


def write_pack(
    objects_dir: str, objects: Sequence[tuple[str, int, bytes]], compression: int
) -> str:
    """Durably add ``objects`` (id, type, raw body) to the repository as one
    pack (written under a temporary name and fsynced, then installed by
    :func:`install_pack`); returns the pack's path."""
    if len({sha for sha, _, _ in objects}) != len(objects):
        # dulwich would write both and index one: git rejects such a pack.
        raise ValueError("a pack must not hold an object twice (git rejects it)")
    pack_dir = os.path.join(objects_dir, "pack")
    os.makedirs(pack_dir, exist_ok=True)
    fd, tmp_pack = new_temporary(pack_dir, "pack")
    try:
        try:
            written, checksum = write_pack_data(
                lambda data: write_all(fd, data),
                (
                    UnpackedObject(type_num, sha=bytes.fromhex(sha), decomp_chunks=[raw])
                    for sha, type_num, raw in objects
                ),
                SHA1,
                num_records=len(objects),
                compression_level=compression,
            )
            datasync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_pack)
        raise
    entries = [(sha, crc, offset) for sha, (offset, crc) in written.items()]
    return install_pack(pack_dir, tmp_pack, entries, checksum)


def install_pack(
    pack_dir: str, tmp_pack: str, entries: Iterable[tuple[bytes, int, int]], checksum: bytes
) -> str:
    """Write the index of the durable pack ``tmp_pack`` (in ``pack_dir``;
    ``entries`` are (binary id, crc32, offset) per object) and move both
    into place; returns the pack's path.

    The pack is renamed into place before its index: git (and dulwich) only
    look at a pack that has an index, so a crash never leaves a pack visible
    without all of its bytes. On any error nothing is left behind.
    """
    leftovers = [tmp_pack]  # what to remove if anything fails
    try:
        fd, tmp_idx = new_temporary(pack_dir, "idx")
        leftovers.append(tmp_idx)
        with os.fdopen(fd, "wb") as f:
            # dulwich writes the entries in the order given: the index is sorted by id.
            write_pack_index_v2(f, sorted((s, off, crc) for s, crc, off in entries), checksum)
            f.flush()
            datasync(f.fileno())
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


# -- reading: an object's type and size from its entry's header ------------

_OFS_DELTA, _REF_DELTA = 6, 7
_MAX_CHAIN = 1000  # git's own default depth is 50; a loop in a corrupt pack stops here


@dataclass(frozen=True, slots=True)
class PackedObject:
    """Where an object is in a pack and what it is, read from entry headers
    only (a delta's from the first bytes of its data and its bases' headers):
    ``ls -l`` of a packed tree never inflates a blob."""

    path: str  # of the pack file
    body: int  # offset of the entry's zlib stream
    type_num: int  # of the object (a delta's: its chain's base's)
    size: int  # of the object (a delta's: what it makes)
    whole: bool  # stored whole (not a delta): its stream is its content


Finder = Callable[[bytes], "tuple[Any, int] | None"]  # binary id -> (pack, offset)


def pack_bytes(pack: Any, offset: int, count: int) -> bytes:
    """``count`` bytes of a dulwich pack at ``offset``: from its map when
    dulwich has one (no system call), else read from the file."""
    contents = getattr(pack.data, "_contents", None)
    if contents is not None:
        return bytes(contents[offset : offset + count])
    with open(os.fspath(pack.data.path), "rb") as f:
        return os.pread(f.fileno(), count, offset)


def _entry_header(head: bytes) -> tuple[int, int, int]:
    """(type, size, length of the header) of the pack entry starting ``head``."""
    if not head:
        raise ValueError("truncated pack entry")
    b = head[0]
    kind, size, shift, i = (b >> 4) & 7, b & 0x0F, 4, 0
    while b & 0x80:
        i += 1
        b = head[i]
        size |= (b & 0x7F) << shift
        shift += 7
    return kind, size, i + 1


def packed_object(find: Finder, key: bytes) -> PackedObject | None:
    """What object ``key`` is in the packs ``find`` searches; None if in
    none. ValueError (IndexError, zlib.error) for a malformed entry."""
    found = find(key)
    if found is None:
        return None
    pack, offset = found
    path = os.fspath(pack.data.path)
    head = pack_bytes(pack, offset, 32)
    kind, size, n = _entry_header(head)
    if kind not in (_OFS_DELTA, _REF_DELTA):
        return PackedObject(path, offset + n, kind, size, True)
    result: int | None = None
    for _ in range(_MAX_CHAIN):
        if kind == _OFS_DELTA:
            # A base-128 offset back to the base entry, in the same pack.
            i, b = n, head[n]
            back = b & 0x7F
            while b & 0x80:
                i += 1
                b = head[i]
                back = ((back + 1) << 7) | (b & 0x7F)
            body, base = offset + i + 1, (pack, offset - back)
        else:
            body = offset + n + 20
            base_found = find(head[n : n + 20])
            if base_found is None:
                raise ValueError("a delta's base is missing")
            base = base_found
        if result is None:
            # A delta's data begins with its base's size and its result's.
            data = zlib.decompressobj().decompress(pack_bytes(pack, body, 64), 32)
            _, pos = varint(data, 0)
            result, _ = varint(data, pos)
        pack, offset = base
        head = pack_bytes(pack, offset, 32)
        kind, _, n = _entry_header(head)
        if kind not in (_OFS_DELTA, _REF_DELTA):
            assert result is not None
            return PackedObject(path, -1, kind, result, False)
    raise ValueError("a delta chain too long (a loop?)")
