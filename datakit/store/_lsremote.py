"""Listing a remote's branches (`git ls-remote --heads`), bounded as a fetch is.

A replica (:mod:`datakit.replica`) asks its primary for its branch heads
several times a second, so this is the cheap half of a fetch: the ref
advertisement only, read through the same :class:`FetchGuard` (the
operator's allowed schemes, connect and inactivity timeouts, the cap on
the advertisement's size) and the same clients (``_clients``), then the
connection is closed without asking for a pack.

What the remote says is checked: an object id that is not 40 lowercase
hex digits fails the whole listing (the remote is broken or hostile, and a
partial list would delete the branches it left out), while a branch name
DataKit cannot hold (``wip+1``: outside ``[A-Za-z0-9/_.-]``)
is left out and reported in :attr:`RemoteHeads.ignored`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._errors import FetchError
from ._refs import is_valid_branch_name
from ._transport import FetchGuard, RemotePolicy, shown_url

_HEADS = b"refs/heads/"
_PEELED = b"^{}"
_SHA = re.compile(r"[0-9a-f]{40}\Z")


@dataclass(frozen=True)
class RemoteHeads:
    """A remote's branches: ``heads`` (name -> commit id) and the names
    left out because DataKit cannot hold them (``ignored``)."""

    heads: dict[str, str]
    ignored: list[str] = field(default_factory=list)


def check_remote(url: str, policy: RemotePolicy) -> None:
    """FetchError (one line, the password hidden) if ``url`` cannot be
    fetched under ``policy``: a scheme the operator did not allow, a
    malformed address. Nothing is connected to."""
    url = url.strip()
    if not url:
        raise FetchError("error: remote url is not defined")
    from ._clients import open_client

    open_client(url, FetchGuard(policy))


def ls_remote(
    url: str, *, policy: RemotePolicy | None = None, guard: FetchGuard | None = None
) -> RemoteHeads:
    """The branch heads of ``url``; FetchError saying why they cannot be
    listed. Blocking: run it in a worker thread, with a ``guard`` the
    caller can cancel (as :meth:`Store.fetch`; one guard per listing)."""
    url = url.strip()
    if not url:
        raise FetchError("error: remote url is not defined")
    # dulwich's client module is slow to import: only when a listing runs.
    from ._clients import open_client
    from ._fetch import _reason

    guard = guard or FetchGuard(policy or RemotePolicy())
    shown = shown_url(url)
    client, path = open_client(url, guard)
    try:
        with guard.watching():
            result = client.get_refs(path.encode("utf-8", "surrogateescape"))
            guard.check()
            guard.received_all()
    except FetchError:
        raise
    except Exception as exc:
        reason = _reason(exc, guard)
        if reason is None and isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror.lower()  # "connection refused": the replica's log says it
        raise FetchError(
            f"error: cannot list the branches of {shown}" + (f": {reason}" if reason else "")
        ) from exc
    finally:
        # dulwich leaves the connection open when the answer is not the
        # protocol: the guard's abort shuts it (or kills the helper) now,
        # not when the garbage collector finds it. The guard is spent.
        guard.abort("the listing is over")
    return _heads(result.refs.items(), shown)


def _heads(refs: Iterable[tuple[bytes, bytes | None]], shown: str) -> RemoteHeads:
    heads: dict[str, str] = {}
    ignored: list[str] = []
    for ref, sha in refs:
        if not ref.startswith(_HEADS) or ref.endswith(_PEELED) or sha is None:
            continue
        name = ref[len(_HEADS) :].decode("utf-8", "surrogateescape")
        text = sha.decode("ascii", "replace")
        if not _SHA.match(text):
            shown_name = name.encode("utf-8", "backslashreplace").decode("ascii", "replace")
            raise FetchError(
                f"error: cannot list the branches of {shown}: "
                f"malformed object id for {shown_name[:100]!r}"
            )
        if is_valid_branch_name(name):
            heads[name] = text
        else:
            ignored.append(name)
    return RemoteHeads(heads, sorted(ignored))
