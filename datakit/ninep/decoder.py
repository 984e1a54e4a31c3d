"""Incremental frame decoder: bytes in as they arrive, messages out.

Sans-I/O in the h11 sense: the caller reads from its socket and calls
:meth:`Decoder.feed`; the decoder never blocks and never does I/O.

Received bytes live in one ``bytearray`` with a read offset. A frame is
decoded in place (through a ``memoryview``, so payloads are copied once, into
the message) and the offset advances; consumed bytes are dropped only when
they make up at least half of the buffer, so the total work stays linear in
the number of bytes received no matter how the stream is chunked.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .codec import Buffer, _decode_frame
from .constants import HEADER_SIZE, IOHDRSZ, Dialect
from .errors import MessageTooLarge
from .messages import Message

__all__ = ["DEFAULT_MAX_SIZE", "Decoder"]

#: Until Tversion negotiates an msize, accept frames of a common default msize.
DEFAULT_MAX_SIZE = 8192 + IOHDRSZ

# Don't bother compacting below this many consumed bytes.
_COMPACT_MIN = 64 * 1024

_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


class Decoder:
    """Split a byte stream into 9P messages.

    ``dialect`` and ``max_size`` are plain attributes: a server starts with
    the defaults, decodes Tversion, then sets ``dialect`` to the negotiated
    variant and ``max_size`` to the negotiated msize. Changes apply to the
    next frame decoded.

    Error behaviour:

    * A malformed but complete frame raises :class:`ProtocolError` (with
      ``.tag`` when the header was readable) **after** the frame has been
      consumed, so the caller may answer with ``Rerror`` for that tag and keep
      calling :meth:`next_message` for the frames that follow.
    * A size field below 7 or above ``max_size`` raises
      :class:`MessageTooLarge` as soon as the 4 size bytes are buffered. The
      frame boundary is then unknown, so the decoder stays stuck on it (every
      later call raises again) and the connection should be closed.

    Nothing other than :class:`NinepError` subclasses is ever raised for any
    input bytes.
    """

    __slots__ = ("_buf", "_pos", "dialect", "max_size")

    def __init__(self, dialect: Dialect = Dialect.V2000, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.dialect = dialect
        self.max_size = max_size
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Number of received bytes not yet returned as messages."""
        return len(self._buf) - self._pos

    def feed(self, data: Buffer) -> None:
        """Append received bytes; an empty ``data`` is allowed and ignored."""
        buf = self._buf
        pos = self._pos
        if pos:
            # Compacting here, never while a frame is being decoded, means no
            # memoryview over the buffer can be alive while it is resized.
            if pos == len(buf):
                buf.clear()
                self._pos = 0
            elif pos >= _COMPACT_MIN and pos * 2 >= len(buf):
                del buf[:pos]
                self._pos = 0
        buf += data

    def next_message(self) -> Message | None:
        """Return the next complete message, or ``None`` if more bytes are needed."""
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 4:
            return None
        size = _U32.unpack_from(buf, pos)[0]
        if size < HEADER_SIZE or size > self.max_size:
            tag = _U16.unpack_from(buf, pos + 5)[0] if avail >= HEADER_SIZE else None
            raise MessageTooLarge(
                f"frame size {size} outside [{HEADER_SIZE}, {self.max_size}]", tag
            )
        if avail < size:
            return None
        # Consume first: a ProtocolError below leaves us at the next frame.
        self._pos = pos + size
        with memoryview(buf) as view:
            return _decode_frame(view, pos, pos + size, self.dialect)

    def messages(self) -> Iterator[Message]:
        """Yield every complete message currently buffered."""
        while (msg := self.next_message()) is not None:
            yield msg
