"""Message objects: one frozen dataclass per 9P message type.

Like h11's events these are plain immutable values with no behaviour: the
codec turns them into bytes and back, the server and client decide what they
mean. Every message has ``tag`` as its first field and a class-level ``TYPE``
holding its type byte, so dispatch on either side is a dict lookup.

Integer fields are unsigned and must fit the wire width (checked on encode).
Fields that only exist in 9P2000.u (``n_uname``, ``extension``, ``errno``,
the numeric ids of :class:`Stat`) have defaults so the same objects serve
every dialect; encoding in plain 9P2000 simply leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .constants import NONUNAME, MessageType

__all__ = [
    "Dirent",
    "Message",
    "Qid",
    "Rattach",
    "Rauth",
    "Rclunk",
    "Rcreate",
    "Rerror",
    "Rflush",
    "Rfsync",
    "Rgetattr",
    "Rgetlock",
    "Rlcreate",
    "Rlerror",
    "Rlink",
    "Rlock",
    "Rlopen",
    "Rmkdir",
    "Rmknod",
    "Ropen",
    "Rread",
    "Rreaddir",
    "Rreadlink",
    "Rremove",
    "Rrename",
    "Rrenameat",
    "Rsetattr",
    "Rstat",
    "Rstatfs",
    "Rsymlink",
    "Runlinkat",
    "Rversion",
    "Rwalk",
    "Rwrite",
    "Rwstat",
    "Rxattrcreate",
    "Rxattrwalk",
    "Stat",
    "Tattach",
    "Tauth",
    "Tclunk",
    "Tcreate",
    "Tflush",
    "Tfsync",
    "Tgetattr",
    "Tgetlock",
    "Tlcreate",
    "Tlink",
    "Tlock",
    "Tlopen",
    "Tmkdir",
    "Tmknod",
    "Topen",
    "Tread",
    "Treaddir",
    "Treadlink",
    "Tremove",
    "Trename",
    "Trenameat",
    "Tsetattr",
    "Tstat",
    "Tstatfs",
    "Tsymlink",
    "Tunlinkat",
    "Tversion",
    "Twalk",
    "Twrite",
    "Twstat",
    "Txattrcreate",
    "Txattrwalk",
]


@dataclass(frozen=True, slots=True)
class Qid:
    """The server's unique identity of a file: what kind, which version, which inode."""

    type: int
    version: int
    path: int


@dataclass(frozen=True, slots=True)
class Stat:
    """A 9P2000 / 9P2000.u stat record (Tstat/Twstat/directory reads).

    The trailing fields are the .u extensions; they keep their defaults when
    a record is decoded in plain 9P2000.
    """

    type: int
    dev: int
    qid: Qid
    mode: int
    atime: int
    mtime: int
    length: int
    name: str
    uid: str
    gid: str
    muid: str
    extension: str = ""
    n_uid: int = NONUNAME
    n_gid: int = NONUNAME
    n_muid: int = NONUNAME


@dataclass(frozen=True, slots=True)
class Dirent:
    """One 9P2000.L directory entry as carried in ``Rreaddir.data``.

    ``offset`` is the cookie the client passes back in the next Treaddir to
    continue after this entry; ``type`` is a Linux ``DT_*`` value.
    """

    qid: Qid
    offset: int
    type: int
    name: str


class Message:
    """Common base of all message classes, for ``isinstance`` and typing."""

    __slots__ = ()
    TYPE: ClassVar[int]
    tag: int


# --------------------------------------------------------------------------
# 9P2000 and 9P2000.u
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tversion(Message):
    """Start a session: propose a maximum frame size and a protocol version."""

    TYPE: ClassVar[int] = MessageType.TVERSION
    tag: int
    msize: int
    version: str


@dataclass(frozen=True, slots=True)
class Rversion(Message):
    TYPE: ClassVar[int] = MessageType.RVERSION
    tag: int
    msize: int
    version: str


@dataclass(frozen=True, slots=True)
class Tauth(Message):
    TYPE: ClassVar[int] = MessageType.TAUTH
    tag: int
    afid: int
    uname: str
    aname: str
    n_uname: int = NONUNAME


@dataclass(frozen=True, slots=True)
class Rauth(Message):
    TYPE: ClassVar[int] = MessageType.RAUTH
    tag: int
    aqid: Qid


@dataclass(frozen=True, slots=True)
class Tattach(Message):
    TYPE: ClassVar[int] = MessageType.TATTACH
    tag: int
    fid: int
    afid: int
    uname: str
    aname: str
    n_uname: int = NONUNAME


@dataclass(frozen=True, slots=True)
class Rattach(Message):
    TYPE: ClassVar[int] = MessageType.RATTACH
    tag: int
    qid: Qid


@dataclass(frozen=True, slots=True)
class Rerror(Message):
    """Failure reply. ``errno`` is only on the wire in .u/.L; 0 means
    "let the client map the string"."""

    TYPE: ClassVar[int] = MessageType.RERROR
    tag: int
    ename: str
    errno: int = 0


@dataclass(frozen=True, slots=True)
class Tflush(Message):
    TYPE: ClassVar[int] = MessageType.TFLUSH
    tag: int
    oldtag: int


@dataclass(frozen=True, slots=True)
class Rflush(Message):
    TYPE: ClassVar[int] = MessageType.RFLUSH
    tag: int


@dataclass(frozen=True, slots=True)
class Twalk(Message):
    """Walk ``fid`` through up to 16 names, binding the result to ``newfid``."""

    TYPE: ClassVar[int] = MessageType.TWALK
    tag: int
    fid: int
    newfid: int
    wnames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rwalk(Message):
    TYPE: ClassVar[int] = MessageType.RWALK
    tag: int
    qids: tuple[Qid, ...]


@dataclass(frozen=True, slots=True)
class Topen(Message):
    TYPE: ClassVar[int] = MessageType.TOPEN
    tag: int
    fid: int
    mode: int


@dataclass(frozen=True, slots=True)
class Ropen(Message):
    TYPE: ClassVar[int] = MessageType.ROPEN
    tag: int
    qid: Qid
    iounit: int


@dataclass(frozen=True, slots=True)
class Tcreate(Message):
    """Create ``name`` in directory ``fid``; ``extension`` (.u) holds e.g. a
    symlink target."""

    TYPE: ClassVar[int] = MessageType.TCREATE
    tag: int
    fid: int
    name: str
    perm: int
    mode: int
    extension: str = ""


@dataclass(frozen=True, slots=True)
class Rcreate(Message):
    TYPE: ClassVar[int] = MessageType.RCREATE
    tag: int
    qid: Qid
    iounit: int


@dataclass(frozen=True, slots=True)
class Tread(Message):
    TYPE: ClassVar[int] = MessageType.TREAD
    tag: int
    fid: int
    offset: int
    count: int


@dataclass(frozen=True, slots=True)
class Rread(Message):
    """Read reply. ``data`` may be any bytes-like object when encoding (a
    ``memoryview`` avoids a copy); decoding always yields ``bytes``."""

    TYPE: ClassVar[int] = MessageType.RREAD
    tag: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Twrite(Message):
    TYPE: ClassVar[int] = MessageType.TWRITE
    tag: int
    fid: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Rwrite(Message):
    TYPE: ClassVar[int] = MessageType.RWRITE
    tag: int
    count: int


@dataclass(frozen=True, slots=True)
class Tclunk(Message):
    TYPE: ClassVar[int] = MessageType.TCLUNK
    tag: int
    fid: int


@dataclass(frozen=True, slots=True)
class Rclunk(Message):
    TYPE: ClassVar[int] = MessageType.RCLUNK
    tag: int


@dataclass(frozen=True, slots=True)
class Tremove(Message):
    TYPE: ClassVar[int] = MessageType.TREMOVE
    tag: int
    fid: int


@dataclass(frozen=True, slots=True)
class Rremove(Message):
    TYPE: ClassVar[int] = MessageType.RREMOVE
    tag: int


@dataclass(frozen=True, slots=True)
class Tstat(Message):
    TYPE: ClassVar[int] = MessageType.TSTAT
    tag: int
    fid: int


@dataclass(frozen=True, slots=True)
class Rstat(Message):
    TYPE: ClassVar[int] = MessageType.RSTAT
    tag: int
    stat: Stat


@dataclass(frozen=True, slots=True)
class Twstat(Message):
    TYPE: ClassVar[int] = MessageType.TWSTAT
    tag: int
    fid: int
    stat: Stat


@dataclass(frozen=True, slots=True)
class Rwstat(Message):
    TYPE: ClassVar[int] = MessageType.RWSTAT
    tag: int


# --------------------------------------------------------------------------
# 9P2000.L
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rlerror(Message):
    """9P2000.L failure reply: a bare Linux errno, no text."""

    TYPE: ClassVar[int] = MessageType.RLERROR
    tag: int
    ecode: int


@dataclass(frozen=True, slots=True)
class Tstatfs(Message):
    TYPE: ClassVar[int] = MessageType.TSTATFS
    tag: int
    fid: int


@dataclass(frozen=True, slots=True)
class Rstatfs(Message):
    TYPE: ClassVar[int] = MessageType.RSTATFS
    tag: int
    type: int
    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    fsid: int
    namelen: int


@dataclass(frozen=True, slots=True)
class Tlopen(Message):
    TYPE: ClassVar[int] = MessageType.TLOPEN
    tag: int
    fid: int
    flags: int


@dataclass(frozen=True, slots=True)
class Rlopen(Message):
    TYPE: ClassVar[int] = MessageType.RLOPEN
    tag: int
    qid: Qid
    iounit: int


@dataclass(frozen=True, slots=True)
class Tlcreate(Message):
    TYPE: ClassVar[int] = MessageType.TLCREATE
    tag: int
    fid: int
    name: str
    flags: int
    mode: int
    gid: int


@dataclass(frozen=True, slots=True)
class Rlcreate(Message):
    TYPE: ClassVar[int] = MessageType.RLCREATE
    tag: int
    qid: Qid
    iounit: int


@dataclass(frozen=True, slots=True)
class Tsymlink(Message):
    TYPE: ClassVar[int] = MessageType.TSYMLINK
    tag: int
    fid: int
    name: str
    symtgt: str
    gid: int


@dataclass(frozen=True, slots=True)
class Rsymlink(Message):
    TYPE: ClassVar[int] = MessageType.RSYMLINK
    tag: int
    qid: Qid


@dataclass(frozen=True, slots=True)
class Tmknod(Message):
    TYPE: ClassVar[int] = MessageType.TMKNOD
    tag: int
    dfid: int
    name: str
    mode: int
    major: int
    minor: int
    gid: int


@dataclass(frozen=True, slots=True)
class Rmknod(Message):
    TYPE: ClassVar[int] = MessageType.RMKNOD
    tag: int
    qid: Qid


@dataclass(frozen=True, slots=True)
class Trename(Message):
    TYPE: ClassVar[int] = MessageType.TRENAME
    tag: int
    fid: int
    dfid: int
    name: str


@dataclass(frozen=True, slots=True)
class Rrename(Message):
    TYPE: ClassVar[int] = MessageType.RRENAME
    tag: int


@dataclass(frozen=True, slots=True)
class Treadlink(Message):
    TYPE: ClassVar[int] = MessageType.TREADLINK
    tag: int
    fid: int


@dataclass(frozen=True, slots=True)
class Rreadlink(Message):
    TYPE: ClassVar[int] = MessageType.RREADLINK
    tag: int
    target: str


@dataclass(frozen=True, slots=True)
class Tgetattr(Message):
    TYPE: ClassVar[int] = MessageType.TGETATTR
    tag: int
    fid: int
    request_mask: int


@dataclass(frozen=True, slots=True)
class Rgetattr(Message):
    TYPE: ClassVar[int] = MessageType.RGETATTR
    tag: int
    valid: int
    qid: Qid
    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_sec: int
    atime_nsec: int
    mtime_sec: int
    mtime_nsec: int
    ctime_sec: int
    ctime_nsec: int
    btime_sec: int
    btime_nsec: int
    gen: int
    data_version: int


@dataclass(frozen=True, slots=True)
class Tsetattr(Message):
    TYPE: ClassVar[int] = MessageType.TSETATTR
    tag: int
    fid: int
    valid: int
    mode: int
    uid: int
    gid: int
    size: int
    atime_sec: int
    atime_nsec: int
    mtime_sec: int
    mtime_nsec: int


@dataclass(frozen=True, slots=True)
class Rsetattr(Message):
    TYPE: ClassVar[int] = MessageType.RSETATTR
    tag: int


@dataclass(frozen=True, slots=True)
class Txattrwalk(Message):
    TYPE: ClassVar[int] = MessageType.TXATTRWALK
    tag: int
    fid: int
    newfid: int
    name: str


@dataclass(frozen=True, slots=True)
class Rxattrwalk(Message):
    TYPE: ClassVar[int] = MessageType.RXATTRWALK
    tag: int
    size: int


@dataclass(frozen=True, slots=True)
class Txattrcreate(Message):
    TYPE: ClassVar[int] = MessageType.TXATTRCREATE
    tag: int
    fid: int
    name: str
    attr_size: int
    flags: int


@dataclass(frozen=True, slots=True)
class Rxattrcreate(Message):
    TYPE: ClassVar[int] = MessageType.RXATTRCREATE
    tag: int


@dataclass(frozen=True, slots=True)
class Treaddir(Message):
    TYPE: ClassVar[int] = MessageType.TREADDIR
    tag: int
    fid: int
    offset: int
    count: int


@dataclass(frozen=True, slots=True)
class Rreaddir(Message):
    """``data`` is a run of :func:`encode_dirent` records, kept opaque so the
    server can build it incrementally up to ``count`` bytes."""

    TYPE: ClassVar[int] = MessageType.RREADDIR
    tag: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Tfsync(Message):
    TYPE: ClassVar[int] = MessageType.TFSYNC
    tag: int
    fid: int
    datasync: int


@dataclass(frozen=True, slots=True)
class Rfsync(Message):
    TYPE: ClassVar[int] = MessageType.RFSYNC
    tag: int


@dataclass(frozen=True, slots=True)
class Tlock(Message):
    TYPE: ClassVar[int] = MessageType.TLOCK
    tag: int
    fid: int
    type: int
    flags: int
    start: int
    length: int
    proc_id: int
    client_id: str


@dataclass(frozen=True, slots=True)
class Rlock(Message):
    TYPE: ClassVar[int] = MessageType.RLOCK
    tag: int
    status: int


@dataclass(frozen=True, slots=True)
class Tgetlock(Message):
    TYPE: ClassVar[int] = MessageType.TGETLOCK
    tag: int
    fid: int
    type: int
    start: int
    length: int
    proc_id: int
    client_id: str


@dataclass(frozen=True, slots=True)
class Rgetlock(Message):
    TYPE: ClassVar[int] = MessageType.RGETLOCK
    tag: int
    type: int
    start: int
    length: int
    proc_id: int
    client_id: str


@dataclass(frozen=True, slots=True)
class Tlink(Message):
    TYPE: ClassVar[int] = MessageType.TLINK
    tag: int
    dfid: int
    fid: int
    name: str


@dataclass(frozen=True, slots=True)
class Rlink(Message):
    TYPE: ClassVar[int] = MessageType.RLINK
    tag: int


@dataclass(frozen=True, slots=True)
class Tmkdir(Message):
    TYPE: ClassVar[int] = MessageType.TMKDIR
    tag: int
    dfid: int
    name: str
    mode: int
    gid: int


@dataclass(frozen=True, slots=True)
class Rmkdir(Message):
    TYPE: ClassVar[int] = MessageType.RMKDIR
    tag: int
    qid: Qid


@dataclass(frozen=True, slots=True)
class Trenameat(Message):
    TYPE: ClassVar[int] = MessageType.TRENAMEAT
    tag: int
    olddirfid: int
    oldname: str
    newdirfid: int
    newname: str


@dataclass(frozen=True, slots=True)
class Rrenameat(Message):
    TYPE: ClassVar[int] = MessageType.RRENAMEAT
    tag: int


@dataclass(frozen=True, slots=True)
class Tunlinkat(Message):
    TYPE: ClassVar[int] = MessageType.TUNLINKAT
    tag: int
    dirfid: int
    name: str
    flags: int


@dataclass(frozen=True, slots=True)
class Runlinkat(Message):
    TYPE: ClassVar[int] = MessageType.RUNLINKAT
    tag: int
