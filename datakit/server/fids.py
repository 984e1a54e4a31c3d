"""The fid table of one session."""

from __future__ import annotations

import errno as E
from dataclasses import dataclass, field

from datakit.vfs import FsError, Handle, Node


@dataclass
class Fid:
    node: Node
    # Directories walked through to reach `node`, root first: `..` pops it, and
    # its last element is the parent that remove and rename act on.
    parents: list[Node] = field(default_factory=list)
    handle: Handle | None = None
    opened_dir: bool = False
    # 9P2000/.u directory reads: encoded stat records, listed at the first read
    # (not at open: Tcreate of a directory opens it, and is rarely read).
    dir_records: list[bytes] | None = None
    dir_index: int = 0
    dir_offset: int = 0
    # 9P2000.L readdir: nodes listed at the first read, indexed by the cookie.
    dir_nodes: list[Node] | None = None

    @property
    def is_open(self) -> bool:
        return self.handle is not None or self.opened_dir

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        self.opened_dir = False
        self.dir_records = None
        self.dir_nodes = None


class FidTable:
    def __init__(self, limit: int) -> None:
        self._fids: dict[int, Fid] = {}
        self._limit = limit

    @property
    def count(self) -> int:
        return len(self._fids)

    def get(self, fid: int) -> Fid:
        try:
            return self._fids[fid]
        except KeyError:
            raise FsError(f"Unknown fid {fid}", E.EBADF) from None

    def peek(self, fid: int) -> Fid | None:
        return self._fids.get(fid)

    def check_free(self, fid: int) -> None:
        if fid in self._fids:
            raise FsError(f"Fid {fid} already in use", E.EBADF)
        if len(self._fids) >= self._limit:
            raise FsError(f"Too many fids (limit {self._limit})", E.EMFILE)

    def bind(self, fid: int, entry: Fid) -> bool:
        """Bind `fid`; True if a new fid was added (for the fid gauge)."""
        old = self._fids.get(fid)
        if old is not None and old is not entry:
            old.close()
        self._fids[fid] = entry
        return old is None

    def release(self, fid: int) -> Fid:
        entry = self._fids.pop(fid, None)
        if entry is None:
            raise FsError(f"Unknown fid {fid}", E.EBADF)
        entry.close()
        return entry

    def clear(self) -> int:
        n = len(self._fids)
        for entry in self._fids.values():
            entry.close()
        self._fids.clear()
        return n
