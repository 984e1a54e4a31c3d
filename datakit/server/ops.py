"""The translation of each 9p request into calls on vfs nodes.

One coroutine per message type, registered in `HANDLERS`; `handle` runs the
one for a message.  Handlers raise `FsError` for anything the client did
wrong; `handle` turns that into Rerror (9P2000, 9P2000.u) or Rlerror
(9P2000.L).  Handlers see the connection's state (`Connection`), never the
session that does the I/O.
"""

from __future__ import annotations

import errno as E
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from datakit import metrics, ninep
from datakit.server.attrs import DIRENT_TYPE, getattr_of, qid_of, stat_of
from datakit.server.connection import Connection
from datakit.server.fids import Fid
from datakit.server.names import check_new_name
from datakit.vfs import Directory, FsError, Kind, Node
from datakit.vfs import errors as fserr

log = logging.getLogger("datakit.server")

Handler = Callable[[Connection, Any], Awaitable[ninep.Message]]
HANDLERS: dict[type, Handler] = {}

NO_LENGTH = 0xFFFFFFFFFFFFFFFF
NO_MODE = 0xFFFFFFFF
READ_OVERHEAD = 11  # size[4] type[1] tag[2] count[4]

# Tsetattr valid bits (Linux include/net/9p/9p.h)
SETATTR_MODE = 0x1
SETATTR_SIZE = 0x8


def handles(cls: type) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[cls] = fn
        return fn

    return register


async def handle(conn: Connection, msg: ninep.Message) -> ninep.Message:
    """The reply to `msg`: its handler's, or an error for its tag."""
    handler = HANDLERS.get(type(msg))
    if handler is None:
        return conn.error_reply(msg.tag, FsError("Function not implemented", E.ENOSYS))
    try:
        return await handler(conn, msg)
    except FsError as err:
        return conn.error_reply(msg.tag, err)
    except ninep.EncodeError:  # e.g. a stat record inside a directory read
        log.exception("cannot encode part of the %s reply", type(msg).__name__)
        return conn.error_reply(msg.tag, FsError("Reply cannot be encoded", E.EIO))
    except Exception as exc:  # a bug must cost one request, never the session
        log.exception("internal error handling %s", type(msg).__name__)
        return conn.error_reply(msg.tag, FsError(f"Internal error: {exc!r}", E.EIO))


def _check_writable(conn: Connection) -> None:
    if conn.read_only:
        raise FsError(conn.read_only_message, E.EROFS)


async def _exists(node: Node, name: str) -> bool:
    if not isinstance(node, Directory) or name in (".", ".."):
        return False
    try:
        await node.lookup(name)
    except FsError:
        return False
    return True


def _dir_of(entry: Fid) -> Directory:
    if not isinstance(entry.node, Directory):
        raise FsError(f'"{entry.node.name}" is not a directory', E.ENOTDIR)
    return entry.node


def _parent_of(entry: Fid) -> Directory:
    if not entry.parents:
        raise FsError("Can't rename /", E.EPERM)
    parent = entry.parents[-1]
    assert isinstance(parent, Directory)
    return parent


async def _lookup(node: Node, name: str) -> Node:
    if not isinstance(node, Directory):
        raise FsError("Can't walk from a file", E.ENOTDIR)
    if name == ".":
        raise FsError("'.' is not valid in 9p", E.EINVAL)
    return await node.lookup(name)


# -- session ---------------------------------------------------------------


@handles(ninep.Tattach)
async def attach(conn: Connection, m: ninep.Tattach) -> ninep.Message:
    conn.fids.check_free(m.fid)
    root = conn.get_root()
    conn.bind(m.fid, Fid(root))
    return ninep.Rattach(tag=m.tag, qid=qid_of(root))


@handles(ninep.Twalk)
async def walk(conn: Connection, m: ninep.Twalk) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    if m.newfid != m.fid:
        conn.fids.check_free(m.newfid)
    node = entry.node
    parents = list(entry.parents)
    qids = []
    for name in m.wnames:
        if name == "..":
            if parents:
                node = parents.pop()
            elif not node.is_dir:
                raise FsError("Can't walk from a file", E.ENOTDIR)
        else:
            child = await _lookup(node, name)
            parents.append(node)
            node = child
        qids.append(qid_of(node))
    if m.newfid == m.fid:
        entry.close()
        entry.node, entry.parents = node, parents
    else:
        conn.bind(m.newfid, Fid(node, parents))
    return ninep.Rwalk(tag=m.tag, qids=tuple(qids))


@handles(ninep.Tclunk)
async def clunk(conn: Connection, m: ninep.Tclunk) -> ninep.Message:
    conn.fids.release(m.fid)
    metrics.FIDS.dec()
    return ninep.Rclunk(tag=m.tag)


@handles(ninep.Tremove)
async def remove(conn: Connection, m: ninep.Tremove) -> ninep.Message:
    entry = conn.fids.release(m.fid)  # clunked whether or not the remove works
    metrics.FIDS.dec()
    _check_writable(conn)
    if not entry.parents:
        raise fserr.read_only_dir()
    parent = entry.parents[-1]
    assert isinstance(parent, Directory)
    await parent.remove(entry.node)
    return ninep.Rremove(tag=m.tag)


# -- open, create, read, write ---------------------------------------------------


async def _open(conn: Connection, entry: Fid) -> None:
    if entry.is_open:
        raise FsError("Already open", E.EBUSY)
    node = entry.node
    if isinstance(node, Directory):
        entry.dir_records = entry.dir_nodes = None  # listed at the first read
        entry.dir_index = entry.dir_offset = 0
        entry.opened_dir = True
    else:
        entry.handle = await node.open()  # type: ignore[attr-defined]


@handles(ninep.Topen)
async def open_(conn: Connection, m: ninep.Topen) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    await _open(conn, entry)
    return ninep.Ropen(tag=m.tag, qid=qid_of(entry.node), iounit=0)


@handles(ninep.Tlopen)
async def lopen(conn: Connection, m: ninep.Tlopen) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    await _open(conn, entry)
    return ninep.Rlopen(tag=m.tag, qid=qid_of(entry.node), iounit=0)


async def _create(conn: Connection, entry: Fid, name: str, kind: Kind, target: str | None) -> Node:
    """Tcreate and Tlcreate: make the node, then the fid walks into it and opens it."""
    if not (kind is Kind.DIR and conn.read_only and await _exists(entry.node, name)):
        _check_writable(conn)  # (a directory that exists: see mkdir)
    if entry.is_open:
        raise FsError("Can't create in an opened fid", E.EBADF)
    directory = _dir_of(entry)
    check_new_name(name)
    if kind is Kind.DIR:
        node = await directory.mkdir(name)
    else:
        node = await directory.create(name, kind, target)
    entry.parents = [*entry.parents, entry.node]
    entry.node = node
    await _open(conn, entry)
    return node


@handles(ninep.Tcreate)
async def create(conn: Connection, m: ninep.Tcreate) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    target: str | None = None
    if m.perm & ninep.DMDIR:
        kind = Kind.DIR
    elif m.perm & ninep.DMSYMLINK:
        kind = Kind.LINK
        target = m.extension if conn.dialect is not ninep.Dialect.V2000 and m.extension else None
        if target is None:
            raise FsError("Missing target for symlink!", E.EINVAL)
    else:
        kind = Kind.EXEC if m.perm & 0o100 else Kind.FILE
    node = await _create(conn, entry, m.name, kind, target)
    return ninep.Rcreate(tag=m.tag, qid=qid_of(node), iounit=0)


@handles(ninep.Tlcreate)
async def lcreate(conn: Connection, m: ninep.Tlcreate) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    kind = Kind.EXEC if m.mode & 0o100 else Kind.FILE
    node = await _create(conn, entry, m.name, kind, None)
    return ninep.Rlcreate(tag=m.tag, qid=qid_of(node), iounit=0)


@handles(ninep.Tmkdir)
async def mkdir(conn: Connection, m: ninep.Tmkdir) -> ninep.Message:
    entry = conn.fids.get(m.dfid)
    # A name that exists is no write (EEXIST, or for branch/ the branch as it
    # is: how clients open one), so read-only servers let the directory answer.
    if not (conn.read_only and await _exists(entry.node, m.name)):
        _check_writable(conn)
    check_new_name(m.name)
    node = await _dir_of(entry).mkdir(m.name)
    return ninep.Rmkdir(tag=m.tag, qid=qid_of(node))


@handles(ninep.Tsymlink)
async def symlink(conn: Connection, m: ninep.Tsymlink) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    _check_writable(conn)
    check_new_name(m.name)
    node = await _dir_of(entry).create(m.name, Kind.LINK, m.symtgt)
    return ninep.Rsymlink(tag=m.tag, qid=qid_of(node))


@handles(ninep.Tmknod)
async def mknod(conn: Connection, m: ninep.Tmknod) -> ninep.Message:
    entry = conn.fids.get(m.dfid)
    _check_writable(conn)
    if m.mode & 0o170000 not in (0, 0o100000):
        raise fserr.not_permitted()  # no devices, fifos or sockets in a Git tree
    kind = Kind.EXEC if m.mode & 0o100 else Kind.FILE
    check_new_name(m.name)
    node = await _dir_of(entry).create(m.name, kind, None)
    return ninep.Rmknod(tag=m.tag, qid=qid_of(node))


@handles(ninep.Tlink)
async def link(conn: Connection, m: ninep.Tlink) -> ninep.Message:
    conn.fids.get(m.dfid)
    conn.fids.get(m.fid)
    raise fserr.not_permitted()  # Git trees have no hard links


@handles(ninep.Tread)
async def read(conn: Connection, m: ninep.Tread) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    count = min(m.count, conn.msize - READ_OVERHEAD)
    if entry.opened_dir:
        if conn.dialect is ninep.Dialect.L:
            raise FsError("Use Treaddir on 9P2000.L", E.EINVAL)
        if m.offset != entry.dir_offset:
            raise FsError("Can't seek in a directory", E.EINVAL)
        parts: list[bytes] = []
        used = 0
        records = entry.dir_records
        if records is None:
            assert isinstance(entry.node, Directory)
            nodes = await entry.node.entries()
            records = [ninep.encode_stat(stat_of(n, n.attr()), conn.dialect) for n in nodes]
            entry.dir_records = records
        i = entry.dir_index
        while i < len(records) and used + len(records[i]) <= count:
            parts.append(records[i])
            used += len(records[i])
            i += 1
        entry.dir_index = i
        entry.dir_offset += used
        return ninep.Rread(tag=m.tag, data=b"".join(parts))
    if entry.handle is None:
        raise FsError("Can't read from unopened fid", E.EBADF)
    data = await entry.handle.read_buffer(m.offset, count)
    metrics.BYTES_READ.inc(len(data))
    # A view of a cached blob goes out as it is (`ninep.encode_parts`); the
    # encoders take any buffer, though decoded messages always hold bytes.
    return ninep.Rread(tag=m.tag, data=cast(bytes, data))


@handles(ninep.Treaddir)
async def readdir(conn: Connection, m: ninep.Treaddir) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    if not entry.opened_dir:
        raise FsError("Can't read from unopened fid", E.EBADF)
    count = min(m.count, conn.msize - READ_OVERHEAD)
    nodes = entry.dir_nodes
    if nodes is None or (m.offset == 0 and entry.dir_index):  # first read, or rewinddir
        assert isinstance(entry.node, Directory)
        nodes = entry.dir_nodes = await entry.node.entries()
    parts: list[bytes] = []
    used = 0
    i = m.offset
    while 0 <= i < len(nodes):
        node = nodes[i]
        kind = Kind.DIR if node.is_dir else node.attr().kind
        record = ninep.encode_dirent(
            ninep.Dirent(qid_of(node), i + 1, DIRENT_TYPE[kind], node.name)
        )
        if used + len(record) > count:
            break
        parts.append(record)
        used += len(record)
        i += 1
    entry.dir_index = i
    return ninep.Rreaddir(tag=m.tag, data=b"".join(parts))


@handles(ninep.Twrite)
async def write(conn: Connection, m: ninep.Twrite) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    if entry.opened_dir:
        raise FsError("Can't write to directories", E.EISDIR)
    if entry.handle is None:
        raise FsError("Can't write to unopened fid", E.EBADF)
    _check_writable(conn)
    n = await entry.handle.write(m.offset, m.data)
    metrics.BYTES_WRITTEN.inc(n)
    return ninep.Rwrite(tag=m.tag, count=n)


# -- attributes ------------------------------------------------------------------


@handles(ninep.Tstat)
async def stat(conn: Connection, m: ninep.Tstat) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    name = entry.node.name if entry.parents else "/"
    return ninep.Rstat(tag=m.tag, stat=stat_of(entry.node, entry.node.attr(), name=name))


async def _chmod(conn: Connection, entry: Fid, mode: int, extension: str) -> None:
    node = entry.node
    if bool(mode & ninep.DMDIR) != node.is_dir:
        raise FsError("Incorrect is_directory flag for chmod", E.EINVAL)
    if node.is_dir:
        raise fserr.not_permitted()
    if mode & ninep.DMSYMLINK:
        if conn.dialect is ninep.Dialect.V2000 or not extension:
            raise FsError("Missing target for symlink!", E.EINVAL)
        await node.chmod(Kind.LINK, extension)
    else:
        await node.chmod(Kind.EXEC if mode & 0o100 else Kind.FILE, None)


@handles(ninep.Twstat)
async def wstat(conn: Connection, m: ninep.Twstat) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    st = m.stat
    changes = (st.name != "") + (st.length != NO_LENGTH) + (st.mode != NO_MODE)
    if changes > 1:
        raise FsError("Can't rename/truncate/chmod at the same time", E.EINVAL)
    if changes:
        _check_writable(conn)
    if st.name:
        parent = _parent_of(entry)
        if st.name != entry.node.name:
            check_new_name(st.name)
            await parent.rename(entry.node, parent, st.name)
    elif st.length != NO_LENGTH:
        await entry.node.truncate(st.length)
    elif st.mode != NO_MODE:
        await _chmod(conn, entry, st.mode, st.extension)
    return ninep.Rwstat(tag=m.tag)


@handles(ninep.Tgetattr)
async def getattr_(conn: Connection, m: ninep.Tgetattr) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    return getattr_of(m.tag, entry.node, entry.node.attr())


@handles(ninep.Tsetattr)
async def setattr_(conn: Connection, m: ninep.Tsetattr) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    if m.valid & (SETATTR_MODE | SETATTR_SIZE):
        _check_writable(conn)
    if m.valid & SETATTR_SIZE:
        await entry.node.truncate(m.size)
    if m.valid & SETATTR_MODE:
        node = entry.node
        if node.is_dir:
            raise fserr.not_permitted()
        if node.attr().kind is not Kind.LINK:
            await node.chmod(Kind.EXEC if m.mode & 0o100 else Kind.FILE, None)
    # uid, gid and times are cosmetic here: accepted and ignored, like upstream's wstat.
    return ninep.Rsetattr(tag=m.tag)


@handles(ninep.Treadlink)
async def readlink(conn: Connection, m: ninep.Treadlink) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    attr = entry.node.attr()
    if attr.kind is not Kind.LINK:
        raise FsError("Not a symlink", E.EINVAL)
    return ninep.Rreadlink(tag=m.tag, target=attr.target)


@handles(ninep.Tstatfs)
async def statfs(conn: Connection, m: ninep.Tstatfs) -> ninep.Message:
    conn.fids.get(m.fid)
    return ninep.Rstatfs(
        tag=m.tag,
        type=0x01021997,  # V9FS_MAGIC
        bsize=4096,
        blocks=1 << 20,
        bfree=1 << 19,
        bavail=1 << 19,
        files=1 << 20,
        ffree=1 << 19,
        fsid=0,
        namelen=255,
    )


@handles(ninep.Tfsync)
async def fsync(conn: Connection, m: ninep.Tfsync) -> ninep.Message:
    # Nothing is buffered between requests: every write is applied when answered.
    conn.fids.get(m.fid)
    return ninep.Rfsync(tag=m.tag)


@handles(ninep.Tlock)
async def lock(conn: Connection, m: ninep.Tlock) -> ninep.Message:
    conn.fids.get(m.fid)
    return ninep.Rlock(tag=m.tag, status=0)  # P9_LOCK_SUCCESS: advisory locks always granted


@handles(ninep.Tgetlock)
async def getlock(conn: Connection, m: ninep.Tgetlock) -> ninep.Message:
    conn.fids.get(m.fid)
    return ninep.Rgetlock(
        tag=m.tag,
        type=2,  # F_UNLCK: nobody holds a conflicting lock
        start=m.start,
        length=m.length,
        proc_id=m.proc_id,
        client_id=m.client_id,
    )


@handles(ninep.Txattrwalk)
async def xattrwalk(conn: Connection, m: ninep.Txattrwalk) -> ninep.Message:
    conn.fids.get(m.fid)
    raise FsError("No data available", E.ENODATA)


@handles(ninep.Txattrcreate)
async def xattrcreate(conn: Connection, m: ninep.Txattrcreate) -> ninep.Message:
    conn.fids.get(m.fid)
    raise FsError("Operation not supported", E.EOPNOTSUPP)


# -- renames and unlinks (9P2000.L) --------------------------------------------------


@handles(ninep.Trename)
async def rename(conn: Connection, m: ninep.Trename) -> ninep.Message:
    entry = conn.fids.get(m.fid)
    new_dir = _dir_of(conn.fids.get(m.dfid))
    _check_writable(conn)
    check_new_name(m.name)
    await _parent_of(entry).rename(entry.node, new_dir, m.name)
    return ninep.Rrename(tag=m.tag)


@handles(ninep.Trenameat)
async def renameat(conn: Connection, m: ninep.Trenameat) -> ninep.Message:
    old_dir = _dir_of(conn.fids.get(m.olddirfid))
    new_dir = _dir_of(conn.fids.get(m.newdirfid))
    _check_writable(conn)
    check_new_name(m.newname)
    child = await old_dir.lookup(m.oldname)
    await old_dir.rename(child, new_dir, m.newname)
    return ninep.Rrenameat(tag=m.tag)


@handles(ninep.Tunlinkat)
async def unlinkat(conn: Connection, m: ninep.Tunlinkat) -> ninep.Message:
    directory = _dir_of(conn.fids.get(m.dirfid))
    _check_writable(conn)
    child = await directory.lookup(m.name)
    await directory.remove(child)
    return ninep.Runlinkat(tag=m.tag)
