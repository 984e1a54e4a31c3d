"""Version negotiation (Tversion/Rversion) for both ends of a connection, sans-I/O.

A 9P connection starts with Tversion: the client names the dialect it wants
and the largest message it accepts (msize); the server answers with the
dialect it will speak and the msize both will use.  Everything after that is
decoded and encoded in that dialect, and no frame may exceed that msize.
This module holds those rules once, for the server (:class:`ServerHandshake`)
and for the client (:func:`version_request` and :func:`accept`); the
negotiated :class:`Settings` configure a :class:`Decoder` the same way on
both ends.

The server's choice of dialect: exactly ``9P2000.u`` or ``9P2000.L`` as
asked, any other string starting with ``9P`` as plain ``9P2000``, anything
else is not 9P and gets the version ``unknown`` (and the connection ends).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .constants import NOTAG, Dialect
from .decoder import Decoder
from .errors import NinepError
from .messages import Rversion, Tversion

__all__ = [
    "INITIAL",
    "MIN_MSIZE",
    "UNKNOWN",
    "ServerHandshake",
    "Settings",
    "State",
    "VersionRefused",
    "accept",
    "dialect_for",
    "negotiate",
    "version_request",
]

#: The version string of a refusal (version(5): the server does not speak 9P).
UNKNOWN = "unknown"
#: The smallest msize a server grants: room for any error reply and a little data.
MIN_MSIZE = 256


class State(enum.Enum):
    """Where a connection is in its life."""

    AWAITING_VERSION = "awaiting version"  # nothing but Tversion is valid yet
    AWAITING_ATTACH = "awaiting attach"  # a version is agreed; no fid is bound yet
    READY = "ready"  # attached: requests of every kind flow
    CLOSING = "closing"  # no more requests are read (an error, a refusal, the end)


@dataclass(frozen=True)
class Settings:
    """What a version negotiation agreed on."""

    dialect: Dialect
    msize: int

    def apply(self, decoder: Decoder) -> None:
        """Decode what follows in this dialect, refusing frames over msize."""
        decoder.dialect = self.dialect
        decoder.max_size = self.msize


#: In force before any negotiation: what an error reply to a first message
#: that is not Tversion is encoded with.
INITIAL = Settings(Dialect.V2000, 8192)


class VersionRefused(NinepError):
    """The peer's Rversion does not start a session this client can use."""


def dialect_for(version: str) -> Dialect | None:
    """The dialect a server speaks to a client asking for `version`; None if not 9P."""
    if version == Dialect.U.value:
        return Dialect.U
    if version == Dialect.L.value:
        return Dialect.L
    if version.startswith("9P"):
        return Dialect.V2000
    return None


def negotiate(request: Tversion, max_msize: int) -> Settings | None:
    """The server's answer to `request`: None if the client does not speak 9P.

    msize is the smaller of the client's and the server's limit, but never
    below MIN_MSIZE, under which not even an error reply fits."""
    dialect = dialect_for(request.version)
    if dialect is None:
        return None
    return Settings(dialect, max(MIN_MSIZE, min(request.msize, max_msize)))


class ServerHandshake:
    """The server's end: the connection's state and what each Tversion gets.

    It also sets the decoder: before a version is agreed it accepts a frame
    of up to `max_msize` bytes (a Tversion may come in a large frame), after,
    the negotiated dialect and msize.
    """

    def __init__(self, decoder: Decoder, max_msize: int) -> None:
        self.decoder = decoder
        self.max_msize = max_msize
        self.state = State.AWAITING_VERSION
        self.settings = INITIAL
        decoder.dialect = INITIAL.dialect
        decoder.max_size = max_msize

    def version(self, request: Tversion) -> Rversion:
        """The Rversion for `request`, with the state and settings it leads to.

        A version the server speaks starts a new session (version(5): it
        aborts every outstanding request and clunks every fid, which the
        caller must do when this returns with state AWAITING_ATTACH); one it
        does not speak is answered ``unknown`` and the state is CLOSING.
        Tversion may come at any time in 9P; a server may still choose not
        to call this once READY (DataKit answers "not implemented" there,
        as the original did)."""
        settings = negotiate(request, self.max_msize)
        if settings is None:
            self.state = State.CLOSING
            return Rversion(tag=request.tag, msize=request.msize, version=UNKNOWN)
        self.settings = settings
        settings.apply(self.decoder)
        self.state = State.AWAITING_ATTACH
        return Rversion(tag=request.tag, msize=settings.msize, version=settings.dialect.value)

    def attached(self) -> None:
        """A fid is bound: requests of every kind are accepted from now on."""
        if self.state is State.AWAITING_ATTACH:
            self.state = State.READY

    def close(self) -> None:
        """Stop reading requests (a fatal error, the end of the stream)."""
        self.state = State.CLOSING


def version_request(msize: int, version: str) -> Tversion:
    """The client's Tversion (always sent with NOTAG); msize at least MIN_MSIZE."""
    if msize < MIN_MSIZE:
        raise ValueError(f"msize {msize} is below the minimum of {MIN_MSIZE}")
    return Tversion(tag=NOTAG, msize=msize, version=version)


def accept(request: Tversion, reply: object) -> Settings:
    """The settings a client uses after `reply` to `request`, or VersionRefused.

    The server may pick another dialect than the one asked for (a server
    that only speaks 9P2000 answers so to 9P2000.L) but never a larger msize."""
    if not isinstance(reply, Rversion) or reply.tag != request.tag:
        raise VersionRefused(f"version negotiation failed: {reply!r}")
    try:
        dialect = Dialect(reply.version)
    except ValueError:
        raise VersionRefused(f"version negotiation failed: {reply!r}") from None
    if not MIN_MSIZE <= reply.msize <= request.msize:
        raise VersionRefused(
            f"version negotiation failed: msize {reply.msize} for {request.msize} asked"
        )
    return Settings(dialect, reply.msize)
