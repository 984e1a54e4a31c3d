"""Numbers of the 9P wire protocol: message types, qid/mode bits, special
fid/tag values, open flags and the Linux errno values 9P2000.L carries.

They are plain ``int`` constants (not enums) because they are OR-ed together
and compared against raw wire values in hot paths.
"""

import enum

__all__ = [
    "AT_REMOVEDIR",
    "DMAPPEND",
    "DMAUTH",
    "DMDEVICE",
    "DMDIR",
    "DMEXCL",
    "DMLINK",
    "DMMOUNT",
    "DMNAMEDPIPE",
    "DMSETGID",
    "DMSETUID",
    "DMSETVTX",
    "DMSOCKET",
    "DMSYMLINK",
    "DMTMP",
    "DT_BLK",
    "DT_CHR",
    "DT_DIR",
    "DT_FIFO",
    "DT_LNK",
    "DT_REG",
    "DT_SOCK",
    "DT_UNKNOWN",
    "E2BIG",
    "EACCES",
    "EAGAIN",
    "EBADF",
    "EBADMSG",
    "EBUSY",
    "ECANCELED",
    "ECONNRESET",
    "EEXIST",
    "EFAULT",
    "EFBIG",
    "EINTR",
    "EINVAL",
    "EIO",
    "EISDIR",
    "ELOOP",
    "EMFILE",
    "EMLINK",
    "EMSGSIZE",
    "ENAMETOOLONG",
    "ENFILE",
    "ENODATA",
    "ENODEV",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "ENOSYS",
    "ENOTDIR",
    "ENOTEMPTY",
    "ENOTSUP",
    "ENXIO",
    "EOPNOTSUPP",
    "EOVERFLOW",
    "EPERM",
    "EPROTO",
    "ERANGE",
    "EROFS",
    "ESPIPE",
    "ETIMEDOUT",
    "EXDEV",
    "GETATTR_ALL",
    "GETATTR_ATIME",
    "GETATTR_BASIC",
    "GETATTR_BLOCKS",
    "GETATTR_BTIME",
    "GETATTR_CTIME",
    "GETATTR_DATA_VERSION",
    "GETATTR_GEN",
    "GETATTR_GID",
    "GETATTR_INO",
    "GETATTR_MODE",
    "GETATTR_MTIME",
    "GETATTR_NLINK",
    "GETATTR_RDEV",
    "GETATTR_SIZE",
    "GETATTR_UID",
    "HEADER_SIZE",
    "IOHDRSZ",
    "LOCK_BLOCKED",
    "LOCK_ERROR",
    "LOCK_FLAGS_BLOCK",
    "LOCK_FLAGS_RECLAIM",
    "LOCK_GRACE",
    "LOCK_SUCCESS",
    "LOCK_TYPE_RDLCK",
    "LOCK_TYPE_UNLCK",
    "LOCK_TYPE_WRLCK",
    "L_O_ACCMODE",
    "L_O_APPEND",
    "L_O_CLOEXEC",
    "L_O_CREAT",
    "L_O_DIRECT",
    "L_O_DIRECTORY",
    "L_O_DSYNC",
    "L_O_EXCL",
    "L_O_FASYNC",
    "L_O_LARGEFILE",
    "L_O_NOATIME",
    "L_O_NOCTTY",
    "L_O_NOFOLLOW",
    "L_O_NONBLOCK",
    "L_O_RDONLY",
    "L_O_RDWR",
    "L_O_SYNC",
    "L_O_TRUNC",
    "L_O_WRONLY",
    "MAXWELEM",
    "NOFID",
    "NONUNAME",
    "NOTAG",
    "OAPPEND",
    "OCEXEC",
    "OEXCL",
    "OEXEC",
    "ORCLOSE",
    "ORDWR",
    "OREAD",
    "OTRUNC",
    "OWRITE",
    "QTAPPEND",
    "QTAUTH",
    "QTDIR",
    "QTEXCL",
    "QTFILE",
    "QTLINK",
    "QTMOUNT",
    "QTSYMLINK",
    "QTTMP",
    "SETATTR_ATIME",
    "SETATTR_ATIME_SET",
    "SETATTR_CTIME",
    "SETATTR_GID",
    "SETATTR_MODE",
    "SETATTR_MTIME",
    "SETATTR_MTIME_SET",
    "SETATTR_SIZE",
    "SETATTR_UID",
    "VERSION_9P2000",
    "VERSION_9P2000_L",
    "VERSION_9P2000_U",
    "Dialect",
    "MessageType",
]

# -- framing ---------------------------------------------------------------

#: size[4] type[1] tag[2]
HEADER_SIZE = 7
#: Overhead of a Tread/Twrite/Rread header; clients size data as msize - IOHDRSZ.
IOHDRSZ = 24
#: Maximum number of elements in one Twalk/Rwalk (Plan 9 ``MAXWELEM``).
MAXWELEM = 16

NOTAG = 0xFFFF
NOFID = 0xFFFFFFFF
NONUNAME = 0xFFFFFFFF

VERSION_9P2000 = "9P2000"
VERSION_9P2000_U = "9P2000.u"
VERSION_9P2000_L = "9P2000.L"


class Dialect(enum.Enum):
    """The protocol variant a session negotiated with Tversion.

    The wire layout of several legacy messages depends on it (.u and .L add
    fields to Tauth, Tattach, Tcreate, Rerror and stat records), so both
    encoding and decoding need to be told which one is in force. The value
    is the version string sent in Tversion.
    """

    V2000 = VERSION_9P2000
    U = VERSION_9P2000_U
    L = VERSION_9P2000_L


class MessageType(enum.IntEnum):
    """The type byte of every message this codec knows."""

    # 9P2000.L
    RLERROR = 7
    TSTATFS = 8
    RSTATFS = 9
    TLOPEN = 12
    RLOPEN = 13
    TLCREATE = 14
    RLCREATE = 15
    TSYMLINK = 16
    RSYMLINK = 17
    TMKNOD = 18
    RMKNOD = 19
    TRENAME = 20
    RRENAME = 21
    TREADLINK = 22
    RREADLINK = 23
    TGETATTR = 24
    RGETATTR = 25
    TSETATTR = 26
    RSETATTR = 27
    TXATTRWALK = 30
    RXATTRWALK = 31
    TXATTRCREATE = 32
    RXATTRCREATE = 33
    TREADDIR = 40
    RREADDIR = 41
    TFSYNC = 50
    RFSYNC = 51
    TLOCK = 52
    RLOCK = 53
    TGETLOCK = 54
    RGETLOCK = 55
    TLINK = 70
    RLINK = 71
    TMKDIR = 72
    RMKDIR = 73
    TRENAMEAT = 74
    RRENAMEAT = 75
    TUNLINKAT = 76
    RUNLINKAT = 77
    # 9P2000 / 9P2000.u
    TVERSION = 100
    RVERSION = 101
    TAUTH = 102
    RAUTH = 103
    TATTACH = 104
    RATTACH = 105
    RERROR = 107
    TFLUSH = 108
    RFLUSH = 109
    TWALK = 110
    RWALK = 111
    TOPEN = 112
    ROPEN = 113
    TCREATE = 114
    RCREATE = 115
    TREAD = 116
    RREAD = 117
    TWRITE = 118
    RWRITE = 119
    TCLUNK = 120
    RCLUNK = 121
    TREMOVE = 122
    RREMOVE = 123
    TSTAT = 124
    RSTAT = 125
    TWSTAT = 126
    RWSTAT = 127


# -- qid.type bits ---------------------------------------------------------

QTDIR = 0x80
QTAPPEND = 0x40
QTEXCL = 0x20
QTMOUNT = 0x10
QTAUTH = 0x08
QTTMP = 0x04
QTSYMLINK = 0x02
QTLINK = 0x01
QTFILE = 0x00

# -- stat.mode / Tcreate.perm bits -----------------------------------------

DMDIR = 0x80000000
DMAPPEND = 0x40000000
DMEXCL = 0x20000000
DMMOUNT = 0x10000000
DMAUTH = 0x08000000
DMTMP = 0x04000000
# 9P2000.u extensions
DMSYMLINK = 0x02000000
DMLINK = 0x01000000
DMDEVICE = 0x00800000
DMNAMEDPIPE = 0x00200000
DMSOCKET = 0x00100000
DMSETUID = 0x00080000
DMSETGID = 0x00040000
DMSETVTX = 0x00010000

# -- Topen/Tcreate mode byte (9P2000) --------------------------------------

OREAD = 0
OWRITE = 1
ORDWR = 2
OEXEC = 3
OTRUNC = 0x10
OCEXEC = 0x20
ORCLOSE = 0x40
OAPPEND = 0x80  # 9P2000.u
OEXCL = 0x1000  # Plan 9 only, does not fit the mode byte

# -- Tlopen/Tlcreate flags (9P2000.L, Linux x86 open(2) values) ------------

L_O_RDONLY = 0o0
L_O_WRONLY = 0o1
L_O_RDWR = 0o2
L_O_ACCMODE = 0o3
L_O_CREAT = 0o100
L_O_EXCL = 0o200
L_O_NOCTTY = 0o400
L_O_TRUNC = 0o1000
L_O_APPEND = 0o2000
L_O_NONBLOCK = 0o4000
L_O_DSYNC = 0o10000
L_O_FASYNC = 0o20000
L_O_DIRECT = 0o40000
L_O_LARGEFILE = 0o100000
L_O_DIRECTORY = 0o200000
L_O_NOFOLLOW = 0o400000
L_O_NOATIME = 0o1000000
L_O_CLOEXEC = 0o2000000
L_O_SYNC = 0o4000000

# -- Tgetattr request_mask / Rgetattr valid --------------------------------

GETATTR_MODE = 0x00000001
GETATTR_NLINK = 0x00000002
GETATTR_UID = 0x00000004
GETATTR_GID = 0x00000008
GETATTR_RDEV = 0x00000010
GETATTR_ATIME = 0x00000020
GETATTR_MTIME = 0x00000040
GETATTR_CTIME = 0x00000080
GETATTR_INO = 0x00000100
GETATTR_SIZE = 0x00000200
GETATTR_BLOCKS = 0x00000400
GETATTR_BTIME = 0x00000800
GETATTR_GEN = 0x00001000
GETATTR_DATA_VERSION = 0x00002000
GETATTR_BASIC = 0x000007FF
GETATTR_ALL = 0x00003FFF

# -- Tsetattr valid --------------------------------------------------------

SETATTR_MODE = 0x00000001
SETATTR_UID = 0x00000002
SETATTR_GID = 0x00000004
SETATTR_SIZE = 0x00000008
SETATTR_ATIME = 0x00000010
SETATTR_MTIME = 0x00000020
SETATTR_CTIME = 0x00000040
SETATTR_ATIME_SET = 0x00000080
SETATTR_MTIME_SET = 0x00000100

# -- locks (Tlock/Tgetlock) ------------------------------------------------

LOCK_TYPE_RDLCK = 0
LOCK_TYPE_WRLCK = 1
LOCK_TYPE_UNLCK = 2
LOCK_FLAGS_BLOCK = 1
LOCK_FLAGS_RECLAIM = 2
LOCK_SUCCESS = 0
LOCK_BLOCKED = 1
LOCK_ERROR = 2
LOCK_GRACE = 3

# -- Tunlinkat flags -------------------------------------------------------

AT_REMOVEDIR = 0x200

# -- Dirent.type (Linux d_type) --------------------------------------------

DT_UNKNOWN = 0
DT_FIFO = 1
DT_CHR = 2
DT_DIR = 4
DT_BLK = 6
DT_REG = 8
DT_LNK = 10
DT_SOCK = 12

# -- Linux errno values (Rlerror.ecode, Rerror.errno in .u) ----------------
# Fixed numbers rather than the host's ``errno`` module: the wire carries
# Linux values whatever OS the server runs on.

EPERM = 1
ENOENT = 2
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
EBADF = 9
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
EXDEV = 18
ENODEV = 19
ENOTDIR = 20
EISDIR = 21
EINVAL = 22
ENFILE = 23
EMFILE = 24
EFBIG = 27
ENOSPC = 28
ESPIPE = 29
EROFS = 30
EMLINK = 31
ERANGE = 34
ENAMETOOLONG = 36
ENOSYS = 38
ENOTEMPTY = 39
ELOOP = 40
ENODATA = 61
EPROTO = 71
EBADMSG = 74
EOVERFLOW = 75
EMSGSIZE = 90
EOPNOTSUPP = 95
ENOTSUP = EOPNOTSUPP
ECONNRESET = 104
ETIMEDOUT = 110
ECANCELED = 125
