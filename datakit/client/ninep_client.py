"""A small synchronous 9p client over a blocking socket.

It is the transport of the client library's 9p backend and the tool the test
suite uses to drive the server with exact messages.

The whole-file helpers pipeline: `create` sends Twalk, Tcreate, the Twrites
and Tclunk back to back and waits once, so a file costs one round trip, not
four.  That relies on the server running the requests of one fid in the order
they arrive, which DataKit's server guarantees (`datakit.server.ordering`);
other servers (diod runs requests on a thread pool) need `pipeline=False`.
Clunks whose outcome does not matter are sent without waiting; their replies
are dropped when they arrive and only then is the fid reused.  Callers may
also use `send`/`receive` directly (tests do, to flush a blocked read).
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
from typing import Any

from datakit import ninep
from datakit.ninep import handshake

DEFAULT_PORT = 5640
# A request to pipeline: its message class and fields (the tag is added on sending).
Request = tuple[type, dict[str, Any]]
NO_LENGTH = 0xFFFFFFFFFFFFFFFF
NO_MODE = 0xFFFFFFFF


class RemoteError(Exception):
    """The server answered Rerror/Rlerror."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno


class ConnectionClosed(ConnectionError):
    """The server closed the connection, or the handshake failed. A
    ConnectionError, so an OSError: transport failures of the client are
    OSErrors (docs/client.md), and callers need catch nothing else."""


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
        if not 0 < int(port) < 65536:
            raise ValueError(f"{address}: port {port} is not between 1 and 65535")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET  # [::1]:5640
        return Address(family, (host, int(port)))
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
        self,
        sock: socket.socket,
        *,
        msize: int,
        version: str,
        aname: str = "",
        pipeline: bool = True,
    ) -> None:
        self.sock = sock
        self.pipelining = pipeline
        self._decoder = ninep.Decoder(dialect=ninep.Dialect.V2000, max_size=msize)
        self.dialect = ninep.Dialect.V2000
        self.msize = msize
        self._tags = itertools.cycle(range(1, 0xFFFF))
        self._fids = itertools.count(1)
        self._free_fids: list[int] = []
        # Tags of requests sent without waiting -> the fid to free on their reply.
        self._unawaited: dict[int, int] = {}
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
        pipeline: bool = True,
    ) -> Client:
        """`pipeline=False` for servers that may reorder requests on one fid."""
        addr = parse_address(address)
        sock = socket.socket(addr.family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(addr.target)
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return cls(sock, msize=msize, version=version, aname=aname, pipeline=pipeline)

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

    def _take(self) -> object | None:
        """The next decoded reply someone waits for, dropping unawaited ones."""
        while True:
            msg = self._decoder.next_message()
            if msg is None:
                return None
            fid = self._unawaited.pop(msg.tag, None)  # type: ignore[attr-defined]
            if fid is None:
                return msg
            self._free_fids.append(fid)

    def receive(self) -> object:
        while True:
            msg = self._take()
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
            msg = self._take()
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
        error = _remote_error(reply)
        if error is not None:
            raise error
        return reply

    def pipeline(self, requests: list[Request]) -> list[object]:
        """Send requests back to back, then wait for all their replies.

        Replies come back in request order; errors are returned, not raised.
        Without pipelining each request waits for the previous reply."""
        if not self.pipelining:
            return [self._exchange(cls, fields) for cls, fields in requests]
        with self._lock:
            msgs = [cls(tag=self.next_tag(), **fields) for cls, fields in requests]
            self.sock.sendall(b"".join(ninep.encode(m, self.dialect) for m in msgs))
            index = {m.tag: i for i, m in enumerate(msgs)}  # type: ignore[attr-defined]
            replies: list[object] = [None] * len(msgs)
            while index:
                reply = self.receive()
                i = index.pop(reply.tag, None)  # type: ignore[attr-defined]
                if i is not None:
                    replies[i] = reply
        return replies

    def _exchange(self, cls: type, fields: dict[str, Any]) -> object:
        with self._lock:
            tag = self.next_tag()
            self.send(cls(tag=tag, **fields))
            while True:
                reply = self.receive()
                if reply.tag == tag:  # type: ignore[attr-defined]
                    return reply

    def _negotiate(self, msize: int, version: str) -> None:
        request = handshake.version_request(msize, version)
        self.send(request)
        try:
            settings = handshake.accept(request, self.receive())
        except handshake.VersionRefused as exc:
            raise ConnectionClosed(str(exc)) from None
        settings.apply(self._decoder)
        self.dialect, self.msize = settings.dialect, settings.msize

    # -- fids ------------------------------------------------------------------

    def new_fid(self) -> int:
        return self._free_fids.pop() if self._free_fids else next(self._fids)

    def clunk(self, fid: int) -> None:
        try:
            self.rpc(ninep.Tclunk, fid=fid)
        finally:
            self._free_fids.append(fid)

    def clunk_later(self, fid: int) -> None:
        """Clunk without waiting; the fid is reused once the reply is in."""
        with self._lock:
            tag = self.next_tag()
            self._unawaited[tag] = fid
            self.send(ninep.Tclunk(tag=tag, fid=fid))

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

    def _walk_step(self, names: list[str]) -> tuple[int, list[Request]]:
        """A fid for `names` and the requests that bind it: a Twalk to pipeline
        with what follows, or none if the path needed walking in steps now."""
        if len(names) > 16:
            return self.walk(names), []
        fid = self.new_fid()
        return fid, [(ninep.Twalk, {"fid": self.root, "newfid": fid, "wnames": tuple(names)})]

    def _batch(self, fid: int, requests: list[Request], *, clunk: str) -> list[object]:
        """Run a pipelined batch about `fid`; raise the first error.

        `clunk` says what releases the fid: "in-batch" (its last request is a
        Tclunk or Tremove), "later" (clunk without waiting), or "on-error"
        (the caller keeps an open fid, released only if something failed)."""
        try:
            replies = self.pipeline(requests)
        except BaseException:
            self._free_fids.append(fid)  # the connection is unusable anyway
            raise
        failed: RemoteError | None = None
        for request, reply in zip(requests, replies, strict=True):
            failed = _failure(request, reply)
            if failed is not None:
                break
        if clunk == "in-batch":
            self._free_fids.append(fid)
        elif clunk == "later" or failed is not None:
            self.clunk_later(fid)
        if failed is not None:
            raise failed
        return replies

    def _open_request(self, fid: int, mode: int) -> Request:
        if self.dialect is ninep.Dialect.L:
            return ninep.Tlopen, {"fid": fid, "flags": mode}
        return ninep.Topen, {"fid": fid, "mode": mode}

    def _truncate_request(self, fid: int, length: int) -> Request:
        if self.dialect is ninep.Dialect.L:
            fields: dict[str, object] = dict(
                fid=fid, valid=0x8, mode=0, uid=0, gid=0, size=length,
                atime_sec=0, atime_nsec=0, mtime_sec=0, mtime_nsec=0,
            )  # fmt: skip
            return ninep.Tsetattr, fields
        return ninep.Twstat, {"fid": fid, "stat": blank_stat(length=length)}

    def _write_requests(self, fid: int, data: bytes) -> list[Request]:
        size = self.iounit
        return [
            (ninep.Twrite, {"fid": fid, "offset": off, "data": data[off : off + size]})
            for off in range(0, len(data), size)
        ]

    def open(self, path: str | tuple[str, ...], mode: int = ninep.OREAD) -> int:
        fid, walk = self._walk_step(split(path))
        self._batch(fid, [*walk, self._open_request(fid, mode)], clunk="on-error")
        return fid

    def open_and_read(
        self, path: str | tuple[str, ...], count: int
    ) -> tuple[int, ninep.Stat, bytes]:
        """Walk, stat, open and read the first ``count`` bytes in one round
        trip: (open fid, stat, data). The caller reads on and clunks."""
        fid, walk = self._walk_step(split(path))
        requests = [
            *walk,
            (ninep.Tstat, {"fid": fid}),
            self._open_request(fid, ninep.OREAD),
            (ninep.Tread, {"fid": fid, "offset": 0, "count": min(count, self.iounit)}),
        ]
        replies = self._batch(fid, requests, clunk="on-error")
        stat: ninep.Stat = replies[-3].stat  # type: ignore[attr-defined]
        data: bytes = replies[-1].data  # type: ignore[attr-defined]
        return fid, stat, data

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
        fid, walk = self._walk_step(split(path))
        first = (ninep.Tread, {"fid": fid, "offset": 0, "count": self.iounit})
        replies = self._batch(
            fid, [*walk, self._open_request(fid, ninep.OREAD), first], clunk="on-error"
        )
        try:
            data: bytes = replies[-1].data  # type: ignore[attr-defined]
            chunks = [data]
            offset = len(data)
            while data:
                data = self.read_fid(fid, offset)
                offset += len(data)
                chunks.append(data)
            return b"".join(chunks)
        finally:
            self.clunk_later(fid)

    def _chunks(self, fid: int) -> Iterator[bytes]:
        offset = 0
        while True:
            data = self.read_fid(fid, offset)
            if not data:
                return
            offset += len(data)
            yield data

    def write(self, path: str | tuple[str, ...], data: bytes, *, truncate: bool = True) -> None:
        """Like `echo data > path`: truncate, open, write, clunk, in one round trip."""
        fid, walk = self._walk_step(split(path))
        requests = [*walk]
        if truncate:
            requests.append(self._truncate_request(fid, 0))
        requests.append(self._open_request(fid, ninep.OWRITE))
        requests += self._write_requests(fid, data) or [
            (ninep.Twrite, {"fid": fid, "offset": 0, "data": b""})
        ]
        requests.append((ninep.Tclunk, {"fid": fid}))
        self._batch(fid, requests, clunk="in-batch")

    def truncate(self, path: str | tuple[str, ...], length: int) -> None:
        fid, walk = self._walk_step(split(path))
        self._batch(fid, [*walk, self._truncate_request(fid, length)], clunk="later")

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
        fid, walk = self._walk_step(names[:-1])
        name = names[-1]
        make: Request
        if self.dialect is ninep.Dialect.L:
            if perm & ninep.DMDIR:
                make = (ninep.Tmkdir, {"dfid": fid, "name": name, "mode": perm & 0o777, "gid": 0})
                data = b""
            elif perm & ninep.DMSYMLINK:
                make = (ninep.Tsymlink, {"fid": fid, "name": name, "symtgt": extension, "gid": 0})
                data = b""
            else:
                fields = {"fid": fid, "name": name, "flags": 1, "mode": perm & 0o777, "gid": 0}
                make = (ninep.Tlcreate, fields)
        else:
            fields = {
                "fid": fid, "name": name, "perm": perm, "mode": ninep.OWRITE,
                "extension": extension,
            }  # fmt: skip
            make = (ninep.Tcreate, fields)
        requests = [*walk, make, *self._write_requests(fid, data), (ninep.Tclunk, {"fid": fid})]
        self._batch(fid, requests, clunk="in-batch")

    def mkdir(self, path: str | tuple[str, ...]) -> None:
        self.create(path, perm=ninep.DMDIR | 0o755)

    def remove(self, path: str | tuple[str, ...]) -> None:
        fid, walk = self._walk_step(split(path))
        # Tremove clunks the fid whether or not the remove works.
        self._batch(fid, [*walk, (ninep.Tremove, {"fid": fid})], clunk="in-batch")

    def stat(self, path: str | tuple[str, ...]) -> ninep.Stat:
        fid, walk = self._walk_step(split(path))
        replies = self._batch(fid, [*walk, (ninep.Tstat, {"fid": fid})], clunk="later")
        return replies[-1].stat  # type: ignore[attr-defined,no-any-return]

    def wstat(self, path: str | tuple[str, ...], **changes: object) -> None:
        fid, walk = self._walk_step(split(path))
        request = (ninep.Twstat, {"fid": fid, "stat": blank_stat(**changes)})
        self._batch(fid, [*walk, request], clunk="later")

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
            self.clunk_later(fid)

    def exists(self, path: str | tuple[str, ...]) -> bool:
        names = split(path)
        try:
            fid, walk = self._walk_step(names)
        except RemoteError:
            return False  # a long path failed in its first steps
        try:
            self._batch(fid, walk, clunk="later")
        except RemoteError:
            return False
        return True


def _remote_error(reply: object) -> RemoteError | None:
    """The error an Rerror/Rlerror reply carries; None for any other reply."""
    if isinstance(reply, ninep.Rerror):
        return RemoteError(reply.ename, reply.errno)
    if isinstance(reply, ninep.Rlerror):
        return RemoteError(f"errno {reply.ecode}", reply.ecode)
    return None


def _failure(request: Request, reply: object) -> RemoteError | None:
    """The error a pipelined request's reply stands for, if any."""
    error = _remote_error(reply)
    if error is not None:
        return error
    cls, fields = request
    if cls is ninep.Twalk and len(reply.qids) < len(fields["wnames"]):  # type: ignore[attr-defined,arg-type]
        # A partial walk leaves newfid unbound (9p spec): report the missing step.
        return RemoteError("No such file or directory", _errno.ENOENT)
    if cls is ninep.Twrite and reply.count != len(fields["data"]):  # type: ignore[attr-defined,arg-type]
        return RemoteError("Short write", _errno.EIO)
    return None


def split(path: str | tuple[str, ...] | list[str]) -> list[str]:
    if isinstance(path, str):
        return [p for p in path.split("/") if p]
    return list(path)
