"""Translate vfs attributes into 9p qids, stat records and Linux getattr replies."""

from __future__ import annotations

import stat as _stat

from datakit import ninep
from datakit.vfs import Attr, Kind, Node

_NINEP_MODE = {
    Kind.DIR: ninep.DMDIR | 0o775,
    Kind.FILE: 0o664,
    Kind.EXEC: 0o775,
    Kind.LINK: ninep.DMSYMLINK | 0o775,
    Kind.GITLINK: 0o444,  # a read-only regular file (docs/filesystem.md)
}
_UNIX_MODE = {
    Kind.DIR: _stat.S_IFDIR | 0o775,
    Kind.FILE: _stat.S_IFREG | 0o664,
    Kind.EXEC: _stat.S_IFREG | 0o775,
    Kind.LINK: _stat.S_IFLNK | 0o777,
    Kind.GITLINK: _stat.S_IFREG | 0o444,
}
DIRENT_TYPE = {Kind.DIR: 4, Kind.FILE: 8, Kind.EXEC: 8, Kind.LINK: 10, Kind.GITLINK: 8}
GETATTR_BASIC = 0x000007FF


def qid_of(node: Node) -> ninep.Qid:
    # Upstream never sets QTSYMLINK and clients use the stat mode to spot
    # symlinks; deciding here would cost an attr() call on every walk step.
    # A node's qid never changes, so it is built once and kept on the node
    # (every walk step answers one).
    qid = node.cached_qid
    if not isinstance(qid, ninep.Qid):
        qid = node.cached_qid = ninep.Qid(
            ninep.QTDIR if node.is_dir else ninep.QTFILE, 0, node.qid_path
        )
    return qid


def stat_of(node: Node, attr: Attr, *, name: str | None = None) -> ninep.Stat:
    return ninep.Stat(
        type=0,
        dev=0,
        qid=qid_of(node),
        mode=_NINEP_MODE[attr.kind],
        atime=0,
        mtime=0,
        length=0 if attr.kind is Kind.DIR else attr.length,
        name=node.name if name is None else name,
        uid="root",
        gid="root",
        muid="none",
        extension=attr.target if attr.kind is Kind.LINK else "",
        n_uid=0,
        n_gid=0,
        n_muid=0,
    )


def getattr_of(tag: int, node: Node, attr: Attr) -> ninep.Rgetattr:
    size = 0 if attr.kind is Kind.DIR else attr.length
    return ninep.Rgetattr(
        tag=tag,
        valid=GETATTR_BASIC,
        qid=qid_of(node),
        mode=_UNIX_MODE[attr.kind],
        uid=0,
        gid=0,
        nlink=2 if attr.kind is Kind.DIR else 1,
        rdev=0,
        size=size,
        blksize=4096,
        blocks=(size + 511) // 512,
        atime_sec=0,
        atime_nsec=0,
        mtime_sec=0,
        mtime_nsec=0,
        ctime_sec=0,
        ctime_nsec=0,
        btime_sec=0,
        btime_nsec=0,
        gen=0,
        data_version=0,
    )
