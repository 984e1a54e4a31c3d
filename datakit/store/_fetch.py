"""Fetching one branch from a remote, so that nothing a remote sends is
stored unchecked (as `git fetch` with ``transfer.fsckObjects``):

1. receive: the pack is streamed into a temporary file (bounded by the
   guard's cap), never into the object store;
2. check: every object in it is checked (``_fsck``), an object twice in the
   pack or a delta against an object it does not contain is refused, and
   everything the fetched commit reaches must be in the pack or already in
   the store, with the type its parent object says;
3. only then the pack is moved in (with an index written by us), or, for
   an in-memory store, its objects added. On refusal the file is deleted.

A thin pack (deltas against objects we said we have) is resolved against
the store and completed with those bases before it is moved in, as git
does: a pack on disk never depends on another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3
from dulwich.errors import GitProtocolError, HangupException
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

from ._clients import open_client
from ._durable import datasync, new_temporary, write_all
from ._errors import FetchError
from ._fsck import BLOB, COMMIT, TYPE_NAMES, FsckError, Link, check_object, check_special
from ._packsizes import PackSizeError, check_sizes
from ._transport import FetchAborted, FetchGuard, shown_url

log = logging.getLogger("datakit.store")

ObjectType = Callable[[str], "int | None"]  # the store's type of an object, None if absent
GetRaw = Callable[[str], "tuple[int, bytes] | None"]  # the store's (type, body) of an object


class Refused(Exception):
    """What is wrong with a received pack (FetchError adds the URL)."""


class _Objects(DeltaChainIterator[UnpackedObject]):
    """Every object of a pack with deltas resolved, its offset and CRC."""

    _compute_crc32 = True

    def _result(self, unpacked: UnpackedObject) -> UnpackedObject:
        return unpacked


@dataclass
class Received:
    head: str
    pack: str | None = None  # the checked temporary pack file, if one was needed
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


def receive(
    url: str,
    branch: str,
    guard: FetchGuard,
    *,
    object_type: ObjectType,
    get_raw: GetRaw,
    graph_walker: Any,
    pack_dir: str | None,
) -> Received:
    """Fetch ``refs/heads/<branch>`` into a checked temporary pack (in
    ``pack_dir``, or the system's temporary directory); a FetchError says
    why if the branch cannot be fetched or what came is refused."""
    client, path = open_client(url, guard)
    shown = shown_url(url)  # never the password: errors and logs show this
    want = b"refs/heads/" + branch.encode("utf-8", "surrogateescape")
    found: list[str] = []

    def determine_wants(refs: Any, depth: Any = None, **kwargs: Any) -> list[Any]:
        guard.start_pack()
        sha = refs.get(want)
        if sha is None:
            return []
        text = sha.decode("ascii", "replace") if isinstance(sha, bytes) else str(sha)
        if len(text) != 40 or any(c not in "0123456789abcdef" for c in text):
            raise Refused(f"malformed object id for {branch}")
        found.append(text)
        return [] if object_type(text) == COMMIT else [sha]

    if pack_dir is not None:
        os.makedirs(pack_dir, exist_ok=True)
        fd, tmp = new_temporary(pack_dir, "fetch")
    else:
        fd, tmp = tempfile.mkstemp(prefix="datakit-fetch-")
    result = Received(head="", pack=tmp)

    def write(data: bytes) -> int:
        write_all(fd, data)
        return len(data)

    try:
        try:
            client.fetch_pack(
                path,
                determine_wants,
                graph_walker,
                pack_data=write,
            )
            datasync(fd)
        finally:
            os.close(fd)
        guard.check()
        guard.received_all()
        if not found:
            raise FetchError("error: no head to fetch")
        result.head = found[0]
        if os.path.getsize(tmp) == 0:  # nothing was needed
            if object_type(result.head) != COMMIT:
                raise Refused("the remote sent no pack")
            result.discard()
            return result
        _check(result, object_type, get_raw, guard)
        guard.check()  # cancelled meanwhile: nothing is stored
    except BaseException as exc:
        result.discard()
        if isinstance(exc, FetchError):
            raise
        if isinstance(exc, Refused | FsckError):
            raise FetchError(f"error: cannot fetch {shown}: {exc}") from exc
        if isinstance(exc, Exception):
            # A remote that cannot be reached or read keeps the message of the
            # spec; a bound the guard enforced says which.
            log.info("fetch %s failed: %r", shown, exc)
            reason = _reason(exc, guard)
            raise FetchError(
                f"error: cannot fetch {shown}" + (f": {reason}" if reason else "")
            ) from exc
        raise
    return result


def _reason(exc: Exception, guard: FetchGuard) -> str | None:
    """Why a fetch failed, when the remote (or a bound) is to blame: a
    timeout, a cap, a cancel, an answer that is not the git protocol. None
    when it could not be reached or has no such repository: the message
    stays the spec's plain one then."""
    reason = guard.explain(exc)
    if reason is not None:
        return reason
    cause: BaseException | None = exc
    while cause is not None:  # http: dulwich wraps urllib3's errors
        if isinstance(cause, urllib3.exceptions.TimeoutError):
            return guard.explain_timeout()
        if isinstance(cause, urllib3.exceptions.HTTPError):
            return None  # cannot connect, TLS, DNS: the plain message
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, GitProtocolError) and not isinstance(exc, HangupException):
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        # The remote's own words: no control character reaches the client's
        # terminal (an escape sequence, NUL), as git shows them: "?".
        text = "".join(c if c.isprintable() else "?" for c in text[:200])
        return f"bad answer from the remote: {text}"
    if isinstance(exc, ValueError | KeyError | IndexError | UnicodeError):  # dulwich's parsers
        return "bad answer from the remote: not the git protocol"
    return None


def _check(
    result: Received,
    object_type: ObjectType,
    get_raw: GetRaw,
    guard: FetchGuard,
) -> None:
    """Check the received pack (see the module doc). A cancel (the client
    flushed or left) stops the check too: a big pack takes a while."""
    assert result.pack is not None

    def stored(sha: bytes) -> tuple[int, bytes]:
        """A delta base the pack leaves out (thin pack): ours."""
        found = get_raw(sha.hex() if len(sha) == 20 else sha.decode("ascii"))
        if found is None:
            raise KeyError(sha)
        return found

    try:
        check_sizes(result.pack, guard.policy.max_object, guard.check)  # before inflating
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
                guard.check()
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
    _check_connected(result.head, types, links, object_type)
    if external:
        _complete(result, external, stored)


def _complete(result: Received, bases: set[Any], stored: Callable[[bytes], Any]) -> None:
    """Append the store's delta bases a thin pack left out (checked when
    stored), so the pack stands on its own."""
    assert result.pack is not None
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
    result: Received,
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


def _check_connected(
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
