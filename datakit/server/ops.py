"""The translation of each 9p request into calls on vfs nodes.

One coroutine per message type, registered in `HANDLERS`.  Handlers raise
`FsError` for anything the client did wrong; the session turns that into
Rerror (9P2000, 9P2000.u) or Rlerror (9P2000.L).
"""

from __future__ import annotations

import errno as E
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from datakit import metrics, ninep
from datakit.server.attrs import DIRENT_TYPE, getattr_of, qid_of, stat_of
from datakit.server.fids import Fid
from datakit.vfs import Directory, FsError, Kind, Node
from datakit.vfs import errors as fserr
from datakit.vfs.names import check_new_name

if TYPE_CHECKING:
    from datakit.server.session import Session

Handler = Callable[["Session", Any], Awaitable[object]]
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


def _check_writable(s: Session) -> None:
    if s.read_only:
        raise FsError("Read-only file system", E.EROFS)


def _bind(s: Session, fid: int, entry: Fid) -> None:
    if s.fids.bind(fid, entry):
        metrics.FIDS.inc()


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
async def attach(s: Session, m: ninep.Tattach) -> object:
    s.fids.check_free(m.fid)
    root = s.get_root()
    _bind(s, m.fid, Fid(root))
    return ninep.Rattach(tag=m.tag, qid=qid_of(root))


@handles(ninep.Twalk)
async def walk(s: Session, m: ninep.Twalk) -> object:
    entry = s.fids.get(m.fid)
    if m.newfid != m.fid:
        s.fids.check_free(m.newfid)
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
        _bind(s, m.newfid, Fid(node, parents))
    return ninep.Rwalk(tag=m.tag, qids=tuple(qids))


@handles(ninep.Tclunk)
async def clunk(s: Session, m: ninep.Tclunk) -> object:
    s.fids.release(m.fid)
    metrics.FIDS.dec()
    return ninep.Rclunk(tag=m.tag)


@handles(ninep.Tremove)
async def remove(s: Session, m: ninep.Tremove) -> object:
    entry = s.fids.release(m.fid)  # clunked whether or not the remove works
    metrics.FIDS.dec()
    _check_writable(s)
    if not entry.parents:
        raise fserr.read_only_dir()
    parent = entry.parents[-1]
    assert isinstance(parent, Directory)
    await parent.remove(entry.node)
    return ninep.Rremove(tag=m.tag)


# -- open, create, read, write ---------------------------------------------------


async def _open(s: Session, entry: Fid) -> None:
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
async def open_(s: Session, m: ninep.Topen) -> object:
    entry = s.fids.get(m.fid)
    await _open(s, entry)
    return ninep.Ropen(tag=m.tag, qid=qid_of(entry.node), iounit=0)


@handles(ninep.Tlopen)
async def lopen(s: Session, m: ninep.Tlopen) -> object:
    entry = s.fids.get(m.fid)
    await _open(s, entry)
    return ninep.Rlopen(tag=m.tag, qid=qid_of(entry.node), iounit=0)


async def _create(s: Session, entry: Fid, name: str, kind: Kind, target: str | None) -> Node:
    _check_writable(s)
    if entry.is_open:
        raise FsError("Can't create in an opened fid", E.EBADF)
    directory = _dir_of(entry)
    check_new_name(name)
    if kind is Kind.DIR:
        return await directory.mkdir(name)
    return await directory.create(name, kind, target)


@handles(ninep.Tcreate)
async def create(s: Session, m: ninep.Tcreate) -> object:
    entry = s.fids.get(m.fid)
    target: str | None = None
    if m.perm & ninep.DMDIR:
        kind = Kind.DIR
    elif m.perm & ninep.DMSYMLINK:
        kind = Kind.LINK
        target = m.extension if s.dialect is not ninep.Dialect.V2000 and m.extension else None
        if target is None:
            raise FsError("Missing target for symlink!", E.EINVAL)
    else:
        kind = Kind.EXEC if m.perm & 0o100 else Kind.FILE
    node = await _create(s, entry, m.name, kind, target)
    entry.parents = [*entry.parents, entry.node]
    entry.node = node
    await _open(s, entry)
    return ninep.Rcreate(tag=m.tag, qid=qid_of(node), iounit=0)


@handles(ninep.Tlcreate)
async def lcreate(s: Session, m: ninep.Tlcreate) -> object:
    entry = s.fids.get(m.fid)
    kind = Kind.EXEC if m.mode & 0o100 else Kind.FILE
    node = await _create(s, entry, m.name, kind, None)
    entry.parents = [*entry.parents, entry.node]
    entry.node = node
    await _open(s, entry)
    return ninep.Rlcreate(tag=m.tag, qid=qid_of(node), iounit=0)


@handles(ninep.Tmkdir)
async def mkdir(s: Session, m: ninep.Tmkdir) -> object:
    entry = s.fids.get(m.dfid)
    _check_writable(s)
    check_new_name(m.name)
    node = await _dir_of(entry).mkdir(m.name)
    return ninep.Rmkdir(tag=m.tag, qid=qid_of(node))


@handles(ninep.Tsymlink)
async def symlink(s: Session, m: ninep.Tsymlink) -> object:
    entry = s.fids.get(m.fid)
    _check_writable(s)
    check_new_name(m.name)
    node = await _dir_of(entry).create(m.name, Kind.LINK, m.symtgt)
    return ninep.Rsymlink(tag=m.tag, qid=qid_of(node))


@handles(ninep.Tmknod)
async def mknod(s: Session, m: ninep.Tmknod) -> object:
    entry = s.fids.get(m.dfid)
    _check_writable(s)
    if m.mode & 0o170000 not in (0, 0o100000):
        raise fserr.not_permitted()  # no devices, fifos or sockets in a Git tree
    kind = Kind.EXEC if m.mode & 0o100 else Kind.FILE
    check_new_name(m.name)
    node = await _dir_of(entry).create(m.name, kind, None)
    return ninep.Rmknod(tag=m.tag, qid=qid_of(node))


@handles(ninep.Tlink)
async def link(s: Session, m: ninep.Tlink) -> object:
    s.fids.get(m.dfid)
    s.fids.get(m.fid)
    raise fserr.not_permitted()  # Git trees have no hard links


@handles(ninep.Tread)
async def read(s: Session, m: ninep.Tread) -> object:
    entry = s.fids.get(m.fid)
    count = min(m.count, s.msize - READ_OVERHEAD)
    if entry.opened_dir:
        if s.dialect is ninep.Dialect.L:
            raise FsError("Use Treaddir on 9P2000.L", E.EINVAL)
        if m.offset != entry.dir_offset:
            raise FsError("Can't seek in a directory", E.EINVAL)
        parts: list[bytes] = []
        used = 0
        records = entry.dir_records
        if records is None:
            assert isinstance(entry.node, Directory)
            nodes = await entry.node.entries()
            records = [ninep.encode_stat(stat_of(n, n.attr()), s.dialect) for n in nodes]
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
    data = await entry.handle.read(m.offset, count)
    metrics.BYTES_READ.inc(len(data))
    return ninep.Rread(tag=m.tag, data=data)


@handles(ninep.Treaddir)
async def readdir(s: Session, m: ninep.Treaddir) -> object:
    entry = s.fids.get(m.fid)
    if not entry.opened_dir:
        raise FsError("Can't read from unopened fid", E.EBADF)
    count = min(m.count, s.msize - READ_OVERHEAD)
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
async def write(s: Session, m: ninep.Twrite) -> object:
    entry = s.fids.get(m.fid)
    if entry.opened_dir:
        raise FsError("Can't write to directories", E.EISDIR)
    if entry.handle is None:
        raise FsError("Can't write to unopened fid", E.EBADF)
    _check_writable(s)
    n = await entry.handle.write(m.offset, m.data)
    metrics.BYTES_WRITTEN.inc(n)
    return ninep.Rwrite(tag=m.tag, count=n)


# -- attributes ------------------------------------------------------------------


@handles(ninep.Tstat)
async def stat(s: Session, m: ninep.Tstat) -> object:
    entry = s.fids.get(m.fid)
    name = entry.node.name if entry.parents else "/"
    return ninep.Rstat(tag=m.tag, stat=stat_of(entry.node, entry.node.attr(), name=name))


async def _chmod(s: Session, entry: Fid, mode: int, extension: str) -> None:
    node = entry.node
    if bool(mode & ninep.DMDIR) != node.is_dir:
        raise FsError("Incorrect is_directory flag for chmod", E.EINVAL)
    if node.is_dir:
        raise fserr.not_permitted()
    if mode & ninep.DMSYMLINK:
        if s.dialect is ninep.Dialect.V2000 or not extension:
            raise FsError("Missing target for symlink!", E.EINVAL)
        await node.chmod(Kind.LINK, extension)
    else:
        await node.chmod(Kind.EXEC if mode & 0o100 else Kind.FILE, None)


@handles(ninep.Twstat)
async def wstat(s: Session, m: ninep.Twstat) -> object:
    entry = s.fids.get(m.fid)
    st = m.stat
    changes = (st.name != "") + (st.length != NO_LENGTH) + (st.mode != NO_MODE)
    if changes > 1:
        raise FsError("Can't rename/truncate/chmod at the same time", E.EINVAL)
    if changes:
        _check_writable(s)
    if st.name:
        parent = _parent_of(entry)
        if st.name != entry.node.name:
            check_new_name(st.name)
            await parent.rename(entry.node, parent, st.name)
    elif st.length != NO_LENGTH:
        await entry.node.truncate(st.length)
    elif st.mode != NO_MODE:
        await _chmod(s, entry, st.mode, st.extension)
    return ninep.Rwstat(tag=m.tag)


@handles(ninep.Tgetattr)
async def getattr_(s: Session, m: ninep.Tgetattr) -> object:
    entry = s.fids.get(m.fid)
    return getattr_of(m.tag, entry.node, entry.node.attr())


@handles(ninep.Tsetattr)
async def setattr_(s: Session, m: ninep.Tsetattr) -> object:
    entry = s.fids.get(m.fid)
    if m.valid & (SETATTR_MODE | SETATTR_SIZE):
        _check_writable(s)
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
async def readlink(s: Session, m: ninep.Treadlink) -> object:
    entry = s.fids.get(m.fid)
    attr = entry.node.attr()
    if attr.kind is not Kind.LINK:
        raise FsError("Not a symlink", E.EINVAL)
    return ninep.Rreadlink(tag=m.tag, target=attr.target)


@handles(ninep.Tstatfs)
async def statfs(s: Session, m: ninep.Tstatfs) -> object:
    s.fids.get(m.fid)
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
async def fsync(s: Session, m: ninep.Tfsync) -> object:
    # Nothing is buffered between requests: every write is applied when answered.
    s.fids.get(m.fid)
    return ninep.Rfsync(tag=m.tag)


@handles(ninep.Tlock)
async def lock(s: Session, m: ninep.Tlock) -> object:
    s.fids.get(m.fid)
    return ninep.Rlock(tag=m.tag, status=0)  # P9_LOCK_SUCCESS: advisory locks always granted


@handles(ninep.Tgetlock)
async def getlock(s: Session, m: ninep.Tgetlock) -> object:
    s.fids.get(m.fid)
    return ninep.Rgetlock(
        tag=m.tag,
        type=2,  # F_UNLCK: nobody holds a conflicting lock
        start=m.start,
        length=m.length,
        proc_id=m.proc_id,
        client_id=m.client_id,
    )


@handles(ninep.Txattrwalk)
async def xattrwalk(s: Session, m: ninep.Txattrwalk) -> object:
    s.fids.get(m.fid)
    raise FsError("No data available", E.ENODATA)


@handles(ninep.Txattrcreate)
async def xattrcreate(s: Session, m: ninep.Txattrcreate) -> object:
    s.fids.get(m.fid)
    raise FsError("Operation not supported", E.EOPNOTSUPP)


# -- renames and unlinks (9P2000.L) --------------------------------------------------


@handles(ninep.Trename)
async def rename(s: Session, m: ninep.Trename) -> object:
    entry = s.fids.get(m.fid)
    new_dir = _dir_of(s.fids.get(m.dfid))
    _check_writable(s)
    check_new_name(m.name)
    await _parent_of(entry).rename(entry.node, new_dir, m.name)
    return ninep.Rrename(tag=m.tag)


@handles(ninep.Trenameat)
async def renameat(s: Session, m: ninep.Trenameat) -> object:
    old_dir = _dir_of(s.fids.get(m.olddirfid))
    new_dir = _dir_of(s.fids.get(m.newdirfid))
    _check_writable(s)
    check_new_name(m.newname)
    child = await old_dir.lookup(m.oldname)
    await old_dir.rename(child, new_dir, m.newname)
    return ninep.Rrenameat(tag=m.tag)


@handles(ninep.Tunlinkat)
async def unlinkat(s: Session, m: ninep.Tunlinkat) -> object:
    directory = _dir_of(s.fids.get(m.dirfid))
    _check_writable(s)
    child = await directory.lookup(m.name)
    await directory.remove(child)
    return ninep.Runlinkat(tag=m.tag)
