"""Checking a received pack before anything of it is stored: shared by
`fetch` (a pack a remote sends, see ``_fetch``) and `git push` (a pack a
client sends to ``datakit serve --listen-git --git-push``).

As `git` with ``transfer.fsckObjects``: every object of the pack is checked
(``_fsck``), an object twice in the pack or a delta against an object that
is neither in the pack nor stored is refused, the .gitmodules and
.gitattributes files its trees name are checked, and no object (nor what a
delta makes) may be bigger than the cap. What the pack's objects name must
then be in the pack or already stored: the caller says how much of it to
walk (a fetch: what its head reaches; a push: every link of every object).

A thin pack (deltas against stored objects) is then completed with those
bases (:func:`complete_pack`), as git does: a pack on disk never depends on
another.

A push's pack arrives on the client's connection with nothing after it
(the client then waits for the report): :func:`read_pack_stream` copies it
to a file, parsing it just enough to find where it ends, with bounded
memory (one 64 KiB chunk) and bounded size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dulwich.object_format import SHA1
from dulwich.pack import (
    DeltaChainIterator,
    MemoryPackIndex,
    Pack,
    PackData,
    UnpackedObject,
    UnresolvedDeltas,
    extend_pack,
)

from ._durable import datasync, write_all
from ._errors import StoreError
from ._fsck import BLOB, COMMIT, TYPE_NAMES, FsckError, Link, check_object, check_special
from ._packsizes import PackSizeError, Reader, check_sizes, read_header, walk_entries
from ._transport import FetchAborted

ObjectType = Callable[[str], "int | None"]  # the store's type of an object, None if absent
GetRaw = Callable[[str], "tuple[int, bytes] | None"]  # the store's (type, body) of an object


class Refused(Exception):
    """What is wrong with a received pack (FetchError adds the URL)."""


class PushRefused(StoreError):
    """A pushed pack that is not stored; str() says why (git shows it as
    "remote unpack failed: ...")."""


class _Objects(DeltaChainIterator[UnpackedObject]):
    """Every object of a pack with deltas resolved, its offset and CRC."""

    _compute_crc32 = True

    def _result(self, unpacked: UnpackedObject) -> UnpackedObject:
        return unpacked


@dataclass
class ReceivedPack:
    """A received pack in a temporary file, and what checking it found."""

    pack: str | None = None  # the temporary pack file, if one was needed
    index: list[tuple[bytes, int, int]] = field(default_factory=list)  # (id, crc, offset)
    checksum: bytes = b""

    def discard(self) -> None:
        if self.pack is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.pack)
            self.pack = None

    def read_objects(self) -> Iterator[tuple[str, int, bytes]]:
        """The checked pack's objects (id, type, body), one at a time: an
        in-memory store takes them from here once the pack is accepted, so
        a refused pack never costs what its deltas would make."""
        assert self.pack is not None
        data = PackData(self.pack, SHA1)
        try:
            entries = [(sha, offset, crc) for sha, crc, offset in self.index]
            index = MemoryPackIndex(entries, SHA1, self.checksum)  # type: ignore[arg-type]
            pack = Pack.from_objects(data, index)
            for sha, _, _ in self.index:
                kind, raw = pack.get_raw(sha)  # type: ignore[arg-type]
                yield sha.hex(), kind, bytes(raw)
        finally:
            with contextlib.suppress(BufferError):
                data.close()


@dataclass
class PackContents:
    """What :func:`check_pack` learnt: each object's type, the links of the
    objects that have some, and the stored objects deltas were made against."""

    types: dict[str, int]
    links: dict[str, list[Link]]
    external: set[Any]


def check_pack(
    result: ReceivedPack,
    get_raw: GetRaw,
    max_object: int,
    alive: Callable[[], None],
    *,
    sizes_checked: bool = False,
) -> PackContents:
    """Check every object of the received pack (see the module doc);
    ``alive()`` is called before each object and raises to stop the check
    (a big pack takes a while). Refused or FsckError say what is wrong.
    ``sizes_checked``: :func:`read_pack_stream` already checked the sizes."""
    assert result.pack is not None

    stored = _stored(get_raw)
    if not sizes_checked:
        try:
            check_sizes(result.pack, max_object, alive)  # before inflating
        except (PackSizeError, OSError) as exc:
            raise Refused(str(exc)) from exc
    types: dict[str, int] = {}
    links: dict[str, list[Link]] = {}
    special: dict[str, tuple[str, int]] = {}  # .gitmodules and .gitattributes
    try:
        data = PackData(result.pack, SHA1)
    except Exception as exc:
        raise Refused(f"malformed pack: {exc}") from exc
    try:
        try:
            data.check()  # the trailing checksum
            objects = _Objects.for_pack_data(data, resolve_ext_ref=stored)  # type: ignore[arg-type]
            for obj in objects:
                alive()
                sha = obj.sha().hex()
                kind = obj.obj_type_num
                assert kind is not None and obj.offset is not None and obj.crc32 is not None
                if sha in types:
                    raise FsckError(sha, kind, "the object is twice in the pack")
                raw = b"".join(obj.obj_chunks or [])
                types[sha] = kind
                found = check_object(sha, kind, raw, special)
                if found:
                    links[sha] = found
                result.index.append((obj.sha(), obj.crc32, obj.offset))
            result.checksum = data.get_stored_checksum()
            _check_special(data, result, special, stored)
            external = set(objects.ext_refs())
        except (FsckError, FetchAborted):
            raise
        except UnresolvedDeltas as exc:
            raise Refused("a delta's base is neither in the pack nor stored") from exc
        except Exception as exc:  # dulwich: bad zlib, unresolved delta, checksum...
            raise Refused(f"malformed pack: {str(exc) or type(exc).__name__}") from exc
    finally:
        # After an error mid-object dulwich may still point into its mmap,
        # and closing it then raises BufferError, which would replace the
        # real reason; the map goes when it is collected.
        with contextlib.suppress(BufferError):
            data.close()
    return PackContents(types, links, external)


def _stored(get_raw: GetRaw) -> Callable[[bytes], tuple[int, bytes]]:
    """dulwich's lookup of a delta base a thin pack leaves out: ours, by
    binary or hex id; KeyError if we do not have it either."""

    def stored(sha: bytes) -> tuple[int, bytes]:
        found = get_raw(sha.hex() if len(sha) == 20 else sha.decode("ascii"))
        if found is None:
            raise KeyError(sha)
        return found

    return stored


def complete_pack(result: ReceivedPack, bases: set[Any], get_raw: GetRaw) -> None:
    """Append the store's delta bases a thin pack left out (checked when
    stored), so the pack stands on its own."""
    if not bases:
        return
    assert result.pack is not None

    stored = _stored(get_raw)
    os.chmod(result.pack, 0o644)
    with open(result.pack, "r+b") as f:
        checksum, extra = extend_pack(f, bases, stored, SHA1)  # type: ignore[arg-type]
        f.flush()
        datasync(f.fileno())
    os.chmod(result.pack, 0o444)
    result.checksum = checksum
    result.index += [(sha, crc, offset) for sha, offset, crc in extra]


def _check_special(
    data: PackData,
    result: ReceivedPack,
    special: dict[str, tuple[str, int]],
    stored: Callable[[bytes], Any],
) -> None:
    """Check the .gitmodules and .gitattributes the pack's trees name, now
    that it is known which blobs they are (the pack may hold them first)."""
    if not special:
        return
    entries = [(sha, offset, crc) for sha, crc, offset in result.index]
    index = MemoryPackIndex(entries, SHA1, result.checksum)  # type: ignore[arg-type]
    pack = Pack.from_objects(data, index)
    pack.resolve_ext_ref = stored
    in_pack = {sha.hex() for sha, _, _ in result.index}
    for sha, (file, kind) in sorted(special.items()):
        if kind != BLOB:
            check_special(sha, file, kind, b"")
        elif sha in in_pack:
            check_special(sha, file, *pack.get_raw(bytes.fromhex(sha)))  # type: ignore[arg-type]


def check_connected(
    head: str, types: dict[str, int], links: dict[str, list[Link]], object_type: ObjectType
) -> None:
    """Everything ``head`` reaches is in the pack or already stored (the
    store only holds complete histories), with the type it is named as."""
    todo: list[tuple[str, int, str]] = [(head, COMMIT, "the fetched head")]
    seen: set[str] = set()
    while todo:
        sha, kind, named_by = todo.pop()
        if sha in seen:
            continue
        seen.add(sha)
        have = types.get(sha)
        if have is None:
            have = object_type(sha)
            if have is None:
                raise Refused(f"object {sha} named by {named_by} is missing")
        elif sha in links:
            todo.extend((s, k, sha) for s, k in links[sha])
        if have != kind:
            raise Refused(
                f"object {sha} named by {named_by} is a {TYPE_NAMES.get(have, '?')}, "
                f"not a {TYPE_NAMES[kind]}"
            )


def check_all_links(contents: PackContents, object_type: ObjectType) -> None:
    """Every object every object of the pack names is in the pack or
    already stored, with the type it is named as (git's `index-pack
    --strict`): a pack may then add nothing to the store that a later
    check would take for a complete history while it is not."""
    known: dict[str, int | None] = {}
    for sha, found in contents.links.items():
        for target, kind in found:
            have = contents.types.get(target)
            if have is None:
                if target not in known:
                    known[target] = object_type(target)
                have = known[target]
                if have is None:
                    raise Refused(f"object {target} named by {sha} is missing")
            if have != kind:
                raise Refused(
                    f"object {target} named by {sha} is a {TYPE_NAMES.get(have, '?')}, "
                    f"not a {TYPE_NAMES[kind]}"
                )


# -- a pack as it arrives on a connection ------------------------------------


class PackTooBig(PushRefused):
    """The client sent more than the cap: it is not read further."""


class _Source:
    """The client's bytes, copied to the file as they are read and counted
    against the cap (what :class:`Reader` parses the pack from)."""

    def __init__(self, recv: Callable[[int], bytes], fd: int, max_pack: int) -> None:
        self._recv = recv
        self._fd = fd
        self._max = max_pack
        self.total = 0  # bytes read (and written)

    def __call__(self, size: int) -> bytes:
        data = self._recv(max(1, min(size, self._max - self.total + 1)))
        self.total += len(data)
        if self.total > self._max:
            raise PackTooBig(f"pack bigger than {self._max} bytes")
        write_all(self._fd, data)
        return data


def read_pack_stream(
    recv: Callable[[int], bytes],
    fd: int,
    *,
    max_pack: int,
    max_object: int,
    alive: Callable[[], None] = lambda: None,
) -> int:
    """Copy the pack ``recv`` delivers to ``fd`` up to its end (its
    trailing checksum), checking the sizes on the way as
    :func:`check_sizes` does; the number of objects in it. PushRefused
    (PackTooBig past ``max_pack`` bytes: nothing more is read) says why
    the pack is refused."""
    source = _Source(recv, fd, max_pack)
    read = Reader(source)
    try:
        header, count = read_header(read)
        walk_entries(read, count, max_object, alive)
        trailer = read.take(20)
    except PackSizeError as exc:
        raise PushRefused(str(exc)) from None
    if count == 0 and trailer != hashlib.sha1(header).digest():
        raise PushRefused("malformed pack: bad checksum")
    # Nothing follows a pack; if a client sent more, it is not the pack's.
    os.ftruncate(fd, source.total - read.buffered)
    return count
