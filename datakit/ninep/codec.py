"""Encoding and decoding of single 9P frames, stat records and dirents.

Each message class is described once, in :data:`LAYOUTS`, by a short string
of field codes in dataclass field order. At import time every layout is
compiled, per dialect, into an encoder and a decoder closure: runs of
fixed-width integers become one precompiled little-endian ``struct.Struct``
and the closures are stored in tables indexed by class / type byte, so no
per-call reflection or format parsing happens.

Field codes::

    b h i q   unsigned integer of 1, 2, 4, 8 bytes
    s         string: len[2] + bytes (UTF-8 by convention, see below)
    Q         qid[13]
    W         nwname[2] + nwname * s   (tuple[str, ...], at most 16)
    X         nwqid[2] + nwqid * qid   (tuple[Qid, ...], at most 16)
    D         count[4] + count bytes  (Rread/Twrite/Rreaddir payload)
    S         n[2] + stat record       (Rstat/Twstat; the record has its own size[2])
    u e       a u32 / string that only exists in 9P2000.u and 9P2000.L
              (n_uname, errno, extension); always trailing, so plain 9P2000
              leaves the dataclass default in place

Strings are the exact bytes on the wire: they decode as UTF-8 with
``surrogateescape`` and encode back the same way. A Linux client sends file
names and symlink targets as whatever bytes they are (anything but ``/`` and
NUL), and so does git store them; DataKit keeps names as ``str`` with the
same error handler (``datakit.store``), so a name that is not UTF-8 walks,
lists, stats and reads back byte for byte. Only a ``str`` no bytes decode to
(a lone surrogate made up in Python) cannot be encoded.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from . import messages as m
from .constants import HEADER_SIZE, MAXWELEM, Dialect
from .errors import EncodeError, ProtocolError
from .messages import Dirent, Message, Qid, Stat

__all__ = [
    "LAYOUTS",
    "decode",
    "decode_dirents",
    "decode_stats",
    "encode",
    "encode_dirent",
    "encode_stat",
]

#: Anything ``struct.unpack_from`` and slicing accept.
Buffer = bytes | bytearray | memoryview

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<IBH")
_QID = struct.Struct("<BIQ")
# type[2] dev[4] qid[13] mode[4] atime[4] mtime[4] length[8]
_STAT_FIXED = struct.Struct("<HIBIQIIIQ")
_STAT_IDS = struct.Struct("<III")
# qid[13] offset[8] type[1]
_DIRENT_FIXED = struct.Struct("<BIQQB")

LAYOUTS: dict[type[Message], str] = {
    # 9P2000 / 9P2000.u
    m.Tversion: "is",
    m.Rversion: "is",
    m.Tauth: "issu",
    m.Rauth: "Q",
    m.Tattach: "iissu",
    m.Rattach: "Q",
    m.Rerror: "su",
    m.Tflush: "h",
    m.Rflush: "",
    m.Twalk: "iiW",
    m.Rwalk: "X",
    m.Topen: "ib",
    m.Ropen: "Qi",
    m.Tcreate: "isibe",
    m.Rcreate: "Qi",
    m.Tread: "iqi",
    m.Rread: "D",
    m.Twrite: "iqD",
    m.Rwrite: "i",
    m.Tclunk: "i",
    m.Rclunk: "",
    m.Tremove: "i",
    m.Rremove: "",
    m.Tstat: "i",
    m.Rstat: "S",
    m.Twstat: "iS",
    m.Rwstat: "",
    # 9P2000.L
    m.Rlerror: "i",
    m.Tstatfs: "i",
    m.Rstatfs: "iiqqqqqqi",
    m.Tlopen: "ii",
    m.Rlopen: "Qi",
    m.Tlcreate: "isiii",
    m.Rlcreate: "Qi",
    m.Tsymlink: "issi",
    m.Rsymlink: "Q",
    m.Tmknod: "isiiii",
    m.Rmknod: "Q",
    m.Trename: "iis",
    m.Rrename: "",
    m.Treadlink: "i",
    m.Rreadlink: "s",
    m.Tgetattr: "iq",
    m.Rgetattr: "qQiii" + "qqqqq" + "qqqqqqqq" + "qq",
    m.Tsetattr: "iiiiiqqqqq",
    m.Rsetattr: "",
    m.Txattrwalk: "iis",
    m.Rxattrwalk: "q",
    m.Txattrcreate: "isqi",
    m.Rxattrcreate: "",
    m.Treaddir: "iqi",
    m.Rreaddir: "D",
    m.Tfsync: "ii",
    m.Rfsync: "",
    m.Tlock: "ibiqqis",
    m.Rlock: "b",
    m.Tgetlock: "ibqqis",
    m.Rgetlock: "bqqis",
    m.Tlink: "iis",
    m.Rlink: "",
    m.Tmkdir: "isii",
    m.Rmkdir: "Q",
    m.Trenameat: "isis",
    m.Rrenameat: "",
    m.Tunlinkat: "isi",
    m.Runlinkat: "",
}

#: Type bytes below this belong to 9P2000.L only.
_FIRST_LEGACY_TYPE = 100

# Step kinds of a compiled layout.
_FIXED, _STR, _QIDK, _WNAMES, _QIDS, _DATA, _STAT = range(7)
_INT_FORMATS = {"b": "B", "h": "H", "i": "I", "q": "Q"}

Step = tuple[int, "struct.Struct | None", int]


def _compile(layout: str, extended: bool) -> tuple[Step, ...]:
    """Turn a layout string into steps, merging adjacent integers into one Struct."""
    steps: list[Step] = []
    fmt = ""

    def flush() -> None:
        nonlocal fmt
        if fmt:
            steps.append((_FIXED, struct.Struct("<" + fmt), len(fmt)))
            fmt = ""

    for code in layout:
        if code in "ue":
            if not extended:
                continue
            code = "i" if code == "u" else "s"
        if code in _INT_FORMATS:
            fmt += _INT_FORMATS[code]
            continue
        flush()
        kind = {"s": _STR, "Q": _QIDK, "W": _WNAMES, "X": _QIDS, "D": _DATA, "S": _STAT}[code]
        steps.append((kind, None, 1))
    flush()
    return tuple(steps)


def _field_count(steps: tuple[Step, ...]) -> int:
    return sum(n for _, _, n in steps)


# --------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------


def _encode_str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogateescape")
    if len(b) > 0xFFFF:
        raise EncodeError(f"string of {len(b)} bytes does not fit a 9P string")
    return _U16.pack(len(b)) + b


def _read_str(buf: Buffer, pos: int, end: int) -> tuple[str, int]:
    if pos + 2 > end:
        raise ProtocolError("truncated string length")
    stop = pos + 2 + _U16.unpack_from(buf, pos)[0]
    if stop > end:
        raise ProtocolError("string runs past the end of its container")
    return str(buf[pos + 2 : stop], "utf-8", "surrogateescape"), stop


def _read_qid(buf: Buffer, pos: int, end: int) -> tuple[Qid, int]:
    if pos + 13 > end:
        raise ProtocolError("truncated qid")
    return Qid(*_QID.unpack_from(buf, pos)), pos + 13


def _encode_stat_body(st: Stat, extended: bool) -> bytes:
    q = st.qid
    parts = [
        _STAT_FIXED.pack(
            st.type, st.dev, q.type, q.version, q.path, st.mode, st.atime, st.mtime, st.length
        ),
        _encode_str(st.name),
        _encode_str(st.uid),
        _encode_str(st.gid),
        _encode_str(st.muid),
    ]
    if extended:
        parts.append(_encode_str(st.extension))
        parts.append(_STAT_IDS.pack(st.n_uid, st.n_gid, st.n_muid))
    body = b"".join(parts)
    if len(body) > 0xFFFF:
        raise EncodeError("stat record too large")
    return _U16.pack(len(body)) + body


def _read_stat(buf: Buffer, pos: int, end: int, extended: bool) -> tuple[Stat, int]:
    if pos + 2 > end:
        raise ProtocolError("truncated stat size")
    stop = pos + 2 + _U16.unpack_from(buf, pos)[0]
    if stop > end:
        raise ProtocolError("stat record runs past the end of its container")
    pos += 2
    if pos + _STAT_FIXED.size > stop:
        raise ProtocolError("truncated stat record")
    typ, dev, qt, qv, qp, mode, atime, mtime, length = _STAT_FIXED.unpack_from(buf, pos)
    pos += _STAT_FIXED.size
    name, pos = _read_str(buf, pos, stop)
    uid, pos = _read_str(buf, pos, stop)
    gid, pos = _read_str(buf, pos, stop)
    muid, pos = _read_str(buf, pos, stop)
    qid = Qid(qt, qv, qp)
    if extended:
        extension, pos = _read_str(buf, pos, stop)
        if pos + _STAT_IDS.size > stop:
            raise ProtocolError("truncated 9P2000.u stat ids")
        n_uid, n_gid, n_muid = _STAT_IDS.unpack_from(buf, pos)
        pos += _STAT_IDS.size
        st = Stat(
            typ, dev, qid, mode, atime, mtime, length, name, uid, gid, muid,
            extension, n_uid, n_gid, n_muid,
        )  # fmt: skip
    else:
        st = Stat(typ, dev, qid, mode, atime, mtime, length, name, uid, gid, muid)
    if pos != stop:
        raise ProtocolError(f"stat record has {stop - pos} unexpected trailing bytes")
    return st, stop


# --------------------------------------------------------------------------
# per-message encoders / decoders, built from LAYOUTS
# --------------------------------------------------------------------------

Encoder = Callable[[Any], bytes]
BodyDecoder = Callable[[Buffer, int, int, int], Message]


def _values_getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """A fast ``msg -> tuple of field values`` (``operator.attrgetter`` is C)."""
    if not names:
        return lambda msg: ()
    if len(names) == 1:
        only = attrgetter(names[0])
        return lambda msg: (only(msg),)
    return attrgetter(*names)


def _make_encoder(cls: type[Message], steps: tuple[Step, ...], extended: bool) -> Encoder:
    names = [f.name for f in dataclasses.fields(cls)][1 : 1 + _field_count(steps)]  # type: ignore[arg-type]
    get_values = _values_getter(names)
    type_byte = int(cls.TYPE)

    if not steps or (len(steps) == 1 and steps[0][0] == _FIXED):
        # Only integers: a single pack call produces the whole frame.
        fmt = steps[0][1].format if steps else "<"  # type: ignore[union-attr]
        whole = struct.Struct("<IBH" + fmt[1:])
        pack = whole.pack
        size = whole.size

        def encode_fixed(msg: Any) -> bytes:
            return pack(size, type_byte, msg.tag, *get_values(msg))

        return encode_fixed

    def encode_general(msg: Any) -> bytes:
        values = get_values(msg)
        parts: list[Any] = [b""]
        i = 0
        for kind, st, n in steps:
            if kind == _FIXED:
                parts.append(st.pack(*values[i : i + n]))  # type: ignore[union-attr]
                i += n
                continue
            v = values[i]
            i += 1
            if kind == _STR:
                parts.append(_encode_str(v))
            elif kind == _DATA:
                if type(v) is not bytes:
                    v = memoryview(v).cast("B")
                parts.append(_U32.pack(len(v)))
                parts.append(v)
            elif kind == _QIDK:
                parts.append(_QID.pack(v.type, v.version, v.path))
            elif kind == _WNAMES:
                if len(v) > MAXWELEM:
                    raise EncodeError(f"{len(v)} walk names, at most {MAXWELEM} allowed")
                parts.append(_U16.pack(len(v)))
                parts.extend([_encode_str(s) for s in v])
            elif kind == _QIDS:
                if len(v) > MAXWELEM:
                    raise EncodeError(f"{len(v)} walk qids, at most {MAXWELEM} allowed")
                parts.append(_U16.pack(len(v)))
                parts.extend([_QID.pack(q.type, q.version, q.path) for q in v])
            else:  # _STAT
                record = _encode_stat_body(v, extended)
                parts.append(_U16.pack(len(record)))
                parts.append(record)
        size = HEADER_SIZE
        for p in parts:
            size += len(p)
        parts[0] = _HEADER.pack(size, type_byte, msg.tag)
        return b"".join(parts)

    return encode_general


def _make_decoder(cls: type[Message], steps: tuple[Step, ...], extended: bool) -> BodyDecoder:
    name = cls.__name__

    if not steps:

        def decode_empty(buf: Buffer, pos: int, end: int, tag: int) -> Message:
            if pos != end:
                raise ProtocolError(f"{name} has {end - pos} unexpected trailing bytes")
            return cls(tag)  # type: ignore[call-arg]

        return decode_empty

    if len(steps) == 1 and steps[0][0] == _FIXED:
        fixed = steps[0][1]
        assert fixed is not None
        fixed_size = fixed.size
        unpack_from = fixed.unpack_from

        def decode_fixed(buf: Buffer, pos: int, end: int, tag: int) -> Message:
            if end - pos != fixed_size:
                raise ProtocolError(f"{name} body is {end - pos} bytes, expected {fixed_size}")
            return cls(tag, *unpack_from(buf, pos))  # type: ignore[call-arg]

        return decode_fixed

    def decode_general(buf: Buffer, pos: int, end: int, tag: int) -> Message:
        values: list[Any] = [tag]
        for kind, st, _ in steps:
            if kind == _FIXED:
                stop = pos + st.size  # type: ignore[union-attr]
                if stop > end:
                    raise ProtocolError(f"truncated {name}")
                values.extend(st.unpack_from(buf, pos))  # type: ignore[union-attr]
                pos = stop
            elif kind == _STR:
                s, pos = _read_str(buf, pos, end)
                values.append(s)
            elif kind == _DATA:
                if pos + 4 > end:
                    raise ProtocolError(f"truncated {name} count")
                stop = pos + 4 + _U32.unpack_from(buf, pos)[0]
                if stop > end:
                    raise ProtocolError(f"{name} count runs past the end of the frame")
                values.append(bytes(buf[pos + 4 : stop]))
                pos = stop
            elif kind == _QIDK:
                q, pos = _read_qid(buf, pos, end)
                values.append(q)
            elif kind in (_WNAMES, _QIDS):
                if pos + 2 > end:
                    raise ProtocolError(f"truncated {name} element count")
                count = _U16.unpack_from(buf, pos)[0]
                pos += 2
                if count > MAXWELEM:
                    raise ProtocolError(f"{name} has {count} elements, at most {MAXWELEM}")
                items: list[Any] = []
                read = _read_str if kind == _WNAMES else _read_qid
                for _ in range(count):
                    item, pos = read(buf, pos, end)
                    items.append(item)
                values.append(tuple(items))
            else:  # _STAT
                if pos + 2 > end:
                    raise ProtocolError(f"truncated {name} stat length")
                stop = pos + 2 + _U16.unpack_from(buf, pos)[0]
                if stop > end:
                    raise ProtocolError(f"{name} stat runs past the end of the frame")
                stat, pos = _read_stat(buf, pos + 2, stop, extended)
                if pos != stop:
                    raise ProtocolError(f"{name} stat length disagrees with the record")
                values.append(stat)
        if pos != end:
            raise ProtocolError(f"{name} has {end - pos} unexpected trailing bytes")
        return cls(*values)

    return decode_general


def _build_tables() -> tuple[
    dict[Dialect, dict[type[Message], Encoder]],
    dict[Dialect, list[BodyDecoder | None]],
]:
    encoders: dict[Dialect, dict[type[Message], Encoder]] = {}
    decoders: dict[Dialect, list[BodyDecoder | None]] = {}
    for dialect in Dialect:
        extended = dialect is not Dialect.V2000
        enc: dict[type[Message], Encoder] = {}
        dec: list[BodyDecoder | None] = [None] * 256
        for cls, layout in LAYOUTS.items():
            if cls.TYPE < _FIRST_LEGACY_TYPE and dialect is not Dialect.L:
                continue
            steps = _compile(layout, extended)
            enc[cls] = _make_encoder(cls, steps, extended)
            dec[cls.TYPE] = _make_decoder(cls, steps, extended)
        encoders[dialect] = enc
        decoders[dialect] = dec
    return encoders, decoders


_ENCODERS, _DECODERS = _build_tables()
# Enum.__hash__ is Python code, so a dict lookup keyed by Dialect costs more
# than encoding a small message; pick tables by identity instead.
_V2000, _U, _L = Dialect.V2000, Dialect.U, Dialect.L
_ENC_V2000, _ENC_U, _ENC_L = _ENCODERS[_V2000], _ENCODERS[_U], _ENCODERS[_L]
_DEC_V2000, _DEC_U, _DEC_L = _DECODERS[_V2000], _DECODERS[_U], _DECODERS[_L]


def _check_dialect(dialect: object) -> None:
    if not isinstance(dialect, Dialect):
        raise TypeError(f"dialect must be a Dialect, not {dialect!r}")


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def encode(msg: Message, dialect: Dialect) -> bytes:
    """Serialise ``msg`` into one complete frame, ``size[4]`` included.

    Payloads (``Rread``/``Twrite``/``Rreaddir`` data) are copied exactly once,
    into the returned frame. Fields that do not exist in ``dialect`` (e.g.
    ``Rerror.errno`` in plain 9P2000) are silently left out, so callers can
    build one reply for every dialect. 9P2000.L-only messages are refused in
    the other dialects with :class:`EncodeError`, as are out-of-range values.
    """
    if dialect is _L:
        encoder = _ENC_L.get(type(msg))
    elif dialect is _U:
        encoder = _ENC_U.get(type(msg))
    else:
        _check_dialect(dialect)
        encoder = _ENC_V2000.get(type(msg))
    if encoder is None:
        raise EncodeError(f"{type(msg).__name__} cannot be encoded in {dialect.value}")
    try:
        return encoder(msg)
    except struct.error as e:
        raise EncodeError(f"cannot encode {type(msg).__name__}: {e}") from e
    except UnicodeEncodeError as e:
        raise EncodeError(f"cannot encode {type(msg).__name__}: {e}") from e


_RREAD_HEAD = struct.Struct("<IBHI")  # size[4] type[1] tag[2] count[4]
_RREAD = m.Rread.TYPE
#: Below this, joining header and payload costs less than a second buffer.
_SCATTER_MIN = 4096


def encode_parts(msg: Message, dialect: Dialect) -> tuple[Buffer, ...]:
    """Like :func:`encode`, as buffers to write one after the other.

    An ``Rread`` of more than a few KiB comes back as its 11-byte header
    and its payload untouched (a ``memoryview`` over a cached blob stays
    one), so a writev sends it without the copy into one frame."""
    if type(msg) is m.Rread:
        data = msg.data
        if len(data) >= _SCATTER_MIN:
            n = len(data)
            try:
                return _RREAD_HEAD.pack(n + 11, _RREAD, msg.tag, n), data
            except struct.error as e:
                raise EncodeError(f"cannot encode Rread: {e}") from e
    return (encode(msg, dialect),)


def _decode_frame(buf: Buffer, start: int, end: int, dialect: Dialect) -> Message:
    """Decode the frame ``buf[start:end]`` whose size field is known to be right."""
    _, type_byte, tag = _HEADER.unpack_from(buf, start)
    if dialect is _L:
        decoder = _DEC_L[type_byte]
    elif dialect is _U:
        decoder = _DEC_U[type_byte]
    else:
        _check_dialect(dialect)
        decoder = _DEC_V2000[type_byte]
    if decoder is None:
        raise ProtocolError(f"unknown message type {type_byte} in {dialect.value}", tag)
    try:
        return decoder(buf, start + HEADER_SIZE, end, tag)
    except ProtocolError as e:
        e.tag = tag
        raise
    except (struct.error, ValueError, IndexError, TypeError) as e:
        # Defensive: the explicit bounds checks above should make this
        # unreachable, but the decoder must never leak a non-9P error.
        raise ProtocolError(f"malformed message: {e}", tag) from e


def _as_buffer(data: Buffer) -> Buffer:
    if type(data) is bytes or isinstance(data, (bytes, bytearray)):
        return data
    return memoryview(data).cast("B")


def decode(frame: Buffer, dialect: Dialect) -> Message:
    """Parse exactly one complete frame (as produced by :func:`encode`).

    Raises :class:`ProtocolError` if the frame is malformed, including when
    its size field disagrees with ``len(frame)``.
    """
    frame = _as_buffer(frame)
    n = len(frame)
    if n < HEADER_SIZE:
        raise ProtocolError(f"frame of {n} bytes is shorter than the 9P header")
    size, _, tag = _HEADER.unpack_from(frame, 0)
    if size != n:
        raise ProtocolError(f"size field {size} does not match frame length {n}", tag)
    return _decode_frame(frame, 0, n, dialect)


def encode_stat(stat: Stat, dialect: Dialect) -> bytes:
    """One stat record with its leading ``size[2]``, as concatenated in 9P2000
    directory reads (the .u fields are included in .u and .L)."""
    try:
        return _encode_stat_body(stat, dialect is not _V2000)
    except (struct.error, UnicodeEncodeError) as e:
        raise EncodeError(f"cannot encode stat: {e}") from e


def decode_stats(data: Buffer, dialect: Dialect) -> list[Stat]:
    """Split the payload of a 9P2000 directory read into its stat records."""
    buf = _as_buffer(data)
    extended = dialect is not _V2000
    out: list[Stat] = []
    pos, end = 0, len(buf)
    while pos < end:
        st, pos = _read_stat(buf, pos, end, extended)
        out.append(st)
    return out


def encode_dirent(d: Dirent) -> bytes:
    """One 9P2000.L directory entry: ``qid[13] offset[8] type[1] name[s]``."""
    q = d.qid
    try:
        return _DIRENT_FIXED.pack(q.type, q.version, q.path, d.offset, d.type) + _encode_str(d.name)
    except (struct.error, UnicodeEncodeError) as e:
        raise EncodeError(f"cannot encode dirent: {e}") from e


def decode_dirents(data: Buffer) -> list[Dirent]:
    """Split ``Rreaddir.data`` into its entries."""
    buf = _as_buffer(data)
    out: list[Dirent] = []
    pos, end = 0, len(buf)
    fixed = _DIRENT_FIXED.size
    while pos < end:
        if pos + fixed > end:
            raise ProtocolError("truncated dirent")
        qt, qv, qp, offset, typ = _DIRENT_FIXED.unpack_from(buf, pos)
        name, pos = _read_str(buf, pos + fixed, end)
        out.append(Dirent(Qid(qt, qv, qp), offset, typ, name))
    return out
