"""A small synchronous 9p client over a blocking socket.

It is the transport of the client library's 9p backend and the tool the test
suite uses to drive the server with exact messages.  One request is in
flight at a time unless the caller uses `send`/`receive` directly (tests do,
to pipeline requests or flush a blocked read).
"""

from __future__ import annotations

import contextlib
import errno as _errno
import itertools
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from datakit import ninep

DEFAULT_PORT = 5640
NO_LENGTH = 0xFFFFFFFFFFFFFFFF
NO_MODE = 0xFFFFFFFF


class RemoteError(Exception):
    """The server answered Rerror/Rlerror."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno


class ConnectionClosed(Exception):
    pass


@dataclass(frozen=True)
class Address:
    family: int
    target: str | tuple[str, int]


def parse_address(address: str) -> Address:
    if address.startswith("tcp://"):
        rest = address[len("tcp://") :]
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit():
            host, port = rest, str(DEFAULT_PORT)
        return Address(socket.AF_INET, (host.strip("[]") or "127.0.0.1", int(port)))
    for prefix in ("unix://", "file://"):
        if address.startswith(prefix):
            return Address(socket.AF_UNIX, address[len(prefix) :])
    raise ValueError(f"{address}: use tcp://HOST[:PORT] or unix:///PATH")


def blank_stat(**changes: object) -> ninep.Stat:
    """A wstat record that changes nothing except the given fields."""
    fields: dict[str, object] = dict(
        type=0xFFFF,
        dev=0xFFFFFFFF,
        qid=ninep.Qid(0xFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF),
        mode=NO_MODE,
        atime=0xFFFFFFFF,
        mtime=0xFFFFFFFF,
        length=NO_LENGTH,
        name="",
        uid="",
        gid="",
        muid="",
        extension="",
        n_uid=0xFFFFFFFF,
        n_gid=0xFFFFFFFF,
        n_muid=0xFFFFFFFF,
    )
    fields.update(changes)
    return ninep.Stat(**fields)  # type: ignore[arg-type]


class Client:
    """A 9p session: `Client.connect("unix:///tmp/dk.sock")`."""

    def __init__(
        self, sock: socket.socket, *, msize: int, version: str, aname: str = ""
    ) -> None:
        self.sock = sock
        self._decoder = ninep.Decoder(dialect=ninep.Dialect.V2000, max_size=msize)
        self.dialect = ninep.Dialect.V2000
        self.msize = msize
        self._tags = itertools.cycle(range(1, 0xFFFF))
        self._fids = itertools.count(1)
        self._free_fids: list[int] = []
        self._lock = threading.Lock()
        self._negotiate(msize, version)
        self.root = self.new_fid()
        self.rpc(
            ninep.Tattach, fid=self.root, afid=ninep.NOFID, uname="root", aname=aname, n_uname=0
        )

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        msize: int = 65536,
        version: str = "9P2000.u",
        timeout: float | None = None,
        aname: str = "",
    ) -> Client:
        addr = parse_address(address)
        sock = socket.socket(addr.family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(addr.target)
            if addr.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return cls(sock, msize=msize, version=version, aname=aname)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- wire ---------------------------------------------------------------

    def send(self, msg: ninep.Message) -> None:
        self.sock.sendall(ninep.encode(msg, self.dialect))

    def receive(self) -> object:
        while True:
            msg = self._decoder.next_message()
            if msg is not None:
                return msg
            data = self.sock.recv(max(65536, self.msize))
            if not data:
                raise ConnectionClosed("server closed the connection")
            self._decoder.feed(data)

    def receive_within(self, timeout: float) -> object | None:
        """The next message, or None if none is complete within `timeout`
        seconds (a partial frame stays buffered). Lets a caller wait on a
        blocked read while still noticing cancellation."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self._decoder.next_message()
            if msg is not None:
                return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return None
            data = self.sock.recv(max(65536, self.msize))
            if not data:
                raise ConnectionClosed("server closed the connection")
            self._decoder.feed(data)

    def next_tag(self) -> int:
        return next(self._tags)

    def rpc(self, cls: type, **fields: object) -> object:
        """Send one request and wait for its reply; errors raise RemoteError."""
        with self._lock:
            tag = self.next_tag()
            self.send(cls(tag=tag, **fields))
            reply = self.receive()
        if isinstance(reply, ninep.Rerror):
            raise RemoteError(reply.ename, reply.errno)
        if isinstance(reply, ninep.Rlerror):
            raise RemoteError(f"errno {reply.ecode}", reply.ecode)
        return reply

    def _negotiate(self, msize: int, version: str) -> None:
        self.send(ninep.Tversion(tag=ninep.NOTAG, msize=msize, version=version))
        reply = self.receive()
        if not isinstance(reply, ninep.Rversion) or reply.version == "unknown":
            raise ConnectionClosed(f"version negotiation failed: {reply!r}")
        self.msize = reply.msize
        self.dialect = ninep.Dialect(reply.version)
        self._decoder.dialect = self.dialect
        self._decoder.max_size = self.msize

    # -- fids ------------------------------------------------------------------

    def new_fid(self) -> int:
        return self._free_fids.pop() if self._free_fids else next(self._fids)

    def clunk(self, fid: int) -> None:
        try:
            self.rpc(ninep.Tclunk, fid=fid)
        finally:
            self._free_fids.append(fid)

    def walk(self, path: str | tuple[str, ...] | list[str], fid: int | None = None) -> int:
        names = split(path)
        newfid = self.new_fid()
        start = self.root if fid is None else fid
        # Twalk carries at most 16 names: walk long paths in steps.
        first = names[:16]
        try:
            reply = self.rpc(ninep.Twalk, fid=start, newfid=newfid, wnames=tuple(first))
        except BaseException:
            self._free_fids.append(newfid)
            raise
        if len(reply.qids) < len(first):  # type: ignore[attr-defined]
            # A partial walk leaves newfid unassigned (9p spec): report the
            # missing step instead of handing out a dead fid.
            self._free_fids.append(newfid)
            raise RemoteError("No such file or directory", _errno.ENOENT)
        try:
            for i in range(16, len(names), 16):
                step = names[i : i + 16]
                reply = self.rpc(ninep.Twalk, fid=newfid, newfid=newfid, wnames=tuple(step))
                if len(reply.qids) < len(step):  # type: ignore[attr-defined]
                    raise RemoteError("No such file or directory", _errno.ENOENT)
        except BaseException:
            # newfid is bound on the server since the first step: release it
            # there too, or the next walk reusing the number fails.
            with contextlib.suppress(RemoteError, OSError, ConnectionClosed):
                self.clunk(newfid)
            raise
        return newfid

    # -- whole-file helpers -------------------------------------------------------

    @property
    def iounit(self) -> int:
        return self.msize - 24

    def open(self, path: str | tuple[str, ...], mode: int = ninep.OREAD) -> int:
        fid = self.walk(path)
        try:
            if self.dialect is ninep.Dialect.L:
                self.rpc(ninep.Tlopen, fid=fid, flags=mode)
            else:
                self.rpc(ninep.Topen, fid=fid, mode=mode)
        except BaseException:
            self.clunk(fid)
            raise
        return fid

    def read_fid(self, fid: int, offset: int = 0, count: int | None = None) -> bytes:
        reply = self.rpc(ninep.Tread, fid=fid, offset=offset, count=count or self.iounit)
        return reply.data  # type: ignore[attr-defined,no-any-return]

    def write_fid(self, fid: int, data: bytes, offset: int = 0) -> int:
        """Write all of `data` in msize-sized pieces at increasing offsets."""
        view = memoryview(data)
        done = 0
        while True:
            chunk = bytes(view[done : done + self.iounit])
            reply = self.rpc(ninep.Twrite, fid=fid, offset=offset + done, data=chunk)
            done += reply.count  # type: ignore[attr-defined]
            if done >= len(data):
                return done

    def read(self, path: str | tuple[str, ...]) -> bytes:
        """Whole content of a file: reads until an empty reply."""
        fid = self.open(path)
        try:
            return b"".join(self._chunks(fid))
        finally:
            self.clunk(fid)

    def _chunks(self, fid: int) -> Iterator[bytes]:
        offset = 0
        while True:
            data = self.read_fid(fid, offset)
            if not data:
                return
            offset += len(data)
            yield data

    def write(self, path: str | tuple[str, ...], data: bytes, *, truncate: bool = True) -> None:
        """Like `echo data > path`: truncate first, then write in one message if it fits."""
        fid = self.walk(path)
        try:
            if truncate:
                self._truncate_fid(fid, 0)
            self._open_fid(fid, ninep.OWRITE)
            self.write_fid(fid, data)
        finally:
            self.clunk(fid)

    def _open_fid(self, fid: int, mode: int) -> None:
        if self.dialect is ninep.Dialect.L:
            self.rpc(ninep.Tlopen, fid=fid, flags=mode)
        else:
            self.rpc(ninep.Topen, fid=fid, mode=mode)

    def _truncate_fid(self, fid: int, length: int) -> None:
        if self.dialect is ninep.Dialect.L:
            self.rpc(
                ninep.Tsetattr,
                fid=fid,
                valid=0x8,
                mode=0,
                uid=0,
                gid=0,
                size=length,
                atime_sec=0,
                atime_nsec=0,
                mtime_sec=0,
                mtime_nsec=0,
            )
        else:
            self.rpc(ninep.Twstat, fid=fid, stat=blank_stat(length=length))

    def truncate(self, path: str | tuple[str, ...], length: int) -> None:
        fid = self.walk(path)
        try:
            self._truncate_fid(fid, length)
        finally:
            self.clunk(fid)

    def create(
        self,
        path: str | tuple[str, ...],
        data: bytes = b"",
        *,
        perm: int = 0o644,
        extension: str = "",
    ) -> None:
        """Create (or replace) a file, or with DMDIR in perm a directory, and write data."""
        names = split(path)
        fid = self.walk(names[:-1])
        try:
            if self.dialect is ninep.Dialect.L:
                if perm & ninep.DMDIR:
                    self.rpc(ninep.Tmkdir, dfid=fid, name=names[-1], mode=perm & 0o777, gid=0)
                    return
                if perm & ninep.DMSYMLINK:
                    self.rpc(ninep.Tsymlink, fid=fid, name=names[-1], symtgt=extension, gid=0)
                    return
                self.rpc(ninep.Tlcreate, fid=fid, name=names[-1], flags=1, mode=perm & 0o777, gid=0)
            else:
                self.rpc(
                    ninep.Tcreate,
                    fid=fid,
                    name=names[-1],
                    perm=perm,
                    mode=ninep.OWRITE,
                    extension=extension,
                )
            if data:
                self.write_fid(fid, data)
        finally:
            self.clunk(fid)

    def mkdir(self, path: str | tuple[str, ...]) -> None:
        self.create(path, perm=ninep.DMDIR | 0o755)

    def remove(self, path: str | tuple[str, ...]) -> None:
        fid = self.walk(path)
        try:
            self.rpc(ninep.Tremove, fid=fid)
        finally:
            self._free_fids.append(fid)

    def stat(self, path: str | tuple[str, ...]) -> ninep.Stat:
        fid = self.walk(path)
        try:
            reply = self.rpc(ninep.Tstat, fid=fid)
            return reply.stat  # type: ignore[attr-defined,no-any-return]
        finally:
            self.clunk(fid)

    def wstat(self, path: str | tuple[str, ...], **changes: object) -> None:
        fid = self.walk(path)
        try:
            self.rpc(ninep.Twstat, fid=fid, stat=blank_stat(**changes))
        finally:
            self.clunk(fid)

    def rename(self, path: str | tuple[str, ...], new_name: str) -> None:
        self.wstat(path, name=new_name)

    def chmod(self, path: str | tuple[str, ...], mode: int, extension: str = "") -> None:
        self.wstat(path, mode=mode, extension=extension)

    def ls(self, path: str | tuple[str, ...] = ()) -> list[str]:
        return [name for name, _ in self.listdir(path)]

    def listdir(self, path: str | tuple[str, ...] = ()) -> list[tuple[str, int]]:
        """(name, 9p mode) of each entry; `.L` sessions use Treaddir."""
        fid = self.open(path)
        out: list[tuple[str, int]] = []
        try:
            if self.dialect is ninep.Dialect.L:
                offset = 0
                while True:
                    reply = self.rpc(ninep.Treaddir, fid=fid, offset=offset, count=self.iounit)
                    entries = ninep.decode_dirents(reply.data)  # type: ignore[attr-defined]
                    if not entries:
                        return out
                    for d in entries:
                        out.append((d.name, ninep.DMDIR if d.type == 4 else 0))
                    offset = entries[-1].offset
            for chunk in self._chunks(fid):
                out.extend((s.name, s.mode) for s in ninep.decode_stats(chunk, self.dialect))
            return out
        finally:
            self.clunk(fid)

    def exists(self, path: str | tuple[str, ...]) -> bool:
        try:
            self.clunk(self.walk(path))
        except RemoteError:
            return False
        return True


def split(path: str | tuple[str, ...] | list[str]) -> list[str]:
    if isinstance(path, str):
        return [p for p in path.split("/") if p]
    return list(path)
