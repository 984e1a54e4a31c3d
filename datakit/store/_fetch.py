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

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import urllib3
from dulwich.errors import GitProtocolError, HangupException

from ._clients import open_client
from ._durable import datasync, new_temporary, write_all
from ._errors import FetchError
from ._fsck import COMMIT, FsckError
from ._receive import (
    GetRaw,
    ObjectType,
    ReceivedPack,
    Refused,
    check_connected,
    check_pack,
    complete_pack,
)
from ._transport import FetchGuard, shown_url

log = logging.getLogger("datakit.store")

__all__ = ["Received", "Refused", "receive"]


@dataclass
class Received(ReceivedPack):
    """A fetched pack (see ReceivedPack) and the head it brings."""

    head: str = ""


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
    """Check the received pack (see the module doc and ``_receive``). A
    cancel (the client flushed or left) stops the check too: a big pack
    takes a while."""
    found = check_pack(result, get_raw, guard.policy.max_object, guard.check)
    check_connected(result.head, found.types, found.links, object_type)
    complete_pack(result, found.external, get_raw)
