"""Sans-I/O codec for the 9P2000, 9P2000.u and 9P2000.L wire protocols.

This package turns bytes into message objects and back and does nothing
else: no sockets, no trio, no imports from the rest of DataKit. The server
and the 9p client backend do the I/O and give meaning to the messages.

Existing Python 9P libraries were no option (py9p is Python-2-only, has no
9P2000.L, blocks on sockets and stalls on partial frames), hence this one.

Typical server loop::

    dec = Decoder()
    while data := await stream.receive_some():
        dec.feed(data)
        try:
            for msg in dec.messages():
                handle(msg)
        except MessageTooLarge:
            break                                  # stream cannot be resynchronised
        except ProtocolError as e:
            if e.tag is not None:
                send(encode(Rerror(e.tag, str(e), EPROTO), dec.dialect))

(after a ProtocolError on a complete frame the decoder has already consumed
that frame; call ``messages()`` again to continue with the next one).

Version negotiation, the same rules for both ends, is in :mod:`.handshake`:
the server's :class:`~.handshake.ServerHandshake` answers Tversion and keeps
the connection's state, a client sends ``version_request`` and passes the
reply to ``accept``; either way the agreed ``Settings`` configure the decoder.
"""

from . import constants as _constants
from . import messages as _messages
from .codec import (
    decode,
    decode_dirents,
    decode_stats,
    encode,
    encode_dirent,
    encode_parts,
    encode_stat,
)
from .constants import *  # noqa: F403  (every protocol number is public)
from .decoder import DEFAULT_MAX_SIZE, Decoder
from .errors import EncodeError, MessageTooLarge, NinepError, ProtocolError
from .messages import *  # noqa: F403  (every message class is public)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "Decoder",
    "EncodeError",
    "MessageTooLarge",
    "NinepError",
    "ProtocolError",
    "decode",
    "decode_dirents",
    "decode_stats",
    "encode",
    "encode_dirent",
    "encode_parts",
    "encode_stat",
]
__all__ += _constants.__all__
__all__ += _messages.__all__
