"""Exceptions raised by the 9P codec.

Following h11, errors are split by *whose* fault they are: bytes that came
from the peer and cannot be parsed raise :class:`ProtocolError` (the server
answers with ``Rerror``/``Rlerror`` or drops the connection), while a message
object we were asked to encode that cannot be represented on the wire raises
:class:`EncodeError` (a bug in our own code, never the peer's).
"""

from __future__ import annotations

__all__ = ["EncodeError", "MessageTooLarge", "NinepError", "ProtocolError"]


class NinepError(Exception):
    """Base class of every error this package raises on purpose.

    The decoder promises to raise nothing else for any input bytes, so a
    session loop can catch exactly this class around parsing.
    """


class ProtocolError(NinepError):
    """Bytes received from the peer do not form a valid 9P message.

    ``tag`` is the frame's tag when its 7-byte header could be read, so the
    server can still address an ``Rerror`` to the offending request; it is
    ``None`` when the header itself was unreadable.
    """

    def __init__(self, message: str, tag: int | None = None) -> None:
        super().__init__(message)
        self.tag = tag


class MessageTooLarge(ProtocolError):
    """A frame's size field is below the 7-byte header or above ``max_size``.

    Raised as soon as the size field is seen, before the body arrives, so a
    hostile peer cannot make us buffer gigabytes. The stream cannot be
    re-synchronised after this, so the connection should be closed.
    """


class EncodeError(NinepError, ValueError):
    """A message object cannot be encoded (value out of range, string too
    long, message not part of the requested dialect...).

    Also a ``ValueError`` because that is what it is from the caller's point
    of view: a bad argument.
    """
