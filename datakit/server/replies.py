"""Turning a reply into bytes that always reach the client.

A reply that cannot be encoded (a string the wire cannot carry, a value out
of range) or that would not fit the negotiated msize costs that one request
an error, never the connection.  Error strings are cut here, in one place,
so a message that echoes client input (a name, a command) always fits even
the smallest msize the server accepts.
"""

from __future__ import annotations

import errno as E
import logging

from datakit import ninep
from datakit.server.transport import Buffer
from datakit.vfs import FsError

log = logging.getLogger("datakit.server")

#: Longest error string sent, in UTF-8 bytes, "..." included.
MAX_ERROR_BYTES = 256
# size[4] type[1] tag[2] ename-length[2] errno[4] around an Rerror's string.
_RERROR_OVERHEAD = 13
_CUT = "..."


def bounded(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """`text` as valid UTF-8 of at most `limit` bytes, cut with "..." if longer.

    What cannot be encoded (a lone surrogate from a non-UTF-8 name) becomes "?"."""
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    if len(raw) > limit:
        # Cut on a byte boundary; "ignore" drops a character cut in half.
        raw = raw[: limit - len(_CUT)].decode("utf-8", "ignore").encode() + _CUT.encode()
    return raw.decode("utf-8")


def error_reply(tag: int, err: FsError, dialect: ninep.Dialect, msize: int) -> ninep.Message:
    if dialect is ninep.Dialect.L:
        return ninep.Rlerror(tag=tag, ecode=err.errno)
    limit = min(MAX_ERROR_BYTES, msize - _RERROR_OVERHEAD)
    return ninep.Rerror(tag=tag, ename=bounded(err.message, limit), errno=err.errno)


def encode_reply(reply: ninep.Message, dialect: ninep.Dialect, msize: int) -> tuple[Buffer, ...]:
    """The frame of `reply` as buffers to send in order (a big Rread's data
    is not copied), or of an error for its tag if it cannot be sent."""
    try:
        parts = ninep.encode_parts(reply, dialect)
    except ninep.EncodeError:
        log.exception("cannot encode a %s reply; answering with an error", type(reply).__name__)
        err = FsError("Reply cannot be encoded", E.EIO)
    else:
        size = len(parts[0]) if len(parts) == 1 else sum(len(p) for p in parts)
        if size <= msize:
            return parts
        log.warning(
            "a %s reply of %d bytes exceeds msize %d; answering with an error",
            type(reply).__name__,
            size,
            msize,
        )
        err = FsError(f"Reply of {size} bytes exceeds msize {msize}", E.EMSGSIZE)
    tag: int = reply.tag  # type: ignore[attr-defined]
    return (ninep.encode(error_reply(tag, err, dialect, msize), dialect),)
