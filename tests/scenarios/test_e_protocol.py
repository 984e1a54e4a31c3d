"""Section E of spec/scenarios.md, E41-E50: the 9p protocol as the server speaks it.

Where design.md goes beyond upstream the test asserts our behaviour and says
so: 9P2000.L is spoken, msize goes up to 1 MiB, Tflush really cancels the
flushed request, and 9P2000.u errors carry a real errno.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from datakit import ninep
from datakit.client.ninep_client import Client, RemoteError, parse_address
from tests.scenarios.helpers import (
    TIMEOUT,
    Stream,
    assert_silent,
    cancel,
    commit,
    commit_files,
    connect,
    echo,
    error_of,
    head,
    symlink,
    tx,
    wstat,
)


class Raw:
    """A bare socket speaking 9p frame by frame, for the handshake itself."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.dialect = ninep.Dialect.V2000
        self.decoder = ninep.Decoder(dialect=self.dialect, max_size=1 << 20)

    def send(self, msg: ninep.Message) -> None:
        self.sock.sendall(ninep.encode(msg, self.dialect))

    def receive(self) -> object | None:
        """The next message, or None once the server has closed the connection."""
        while True:
            msg = self.decoder.next_message()
            if msg is not None:
                return msg
            data = self.sock.recv(65536)
            if not data:
                return None
            self.decoder.feed(data)

    def version(self, version: str, msize: int) -> ninep.Rversion:
        self.send(ninep.Tversion(tag=ninep.NOTAG, msize=msize, version=version))
        reply = self.receive()
        assert isinstance(reply, ninep.Rversion), reply
        if reply.version != "unknown":
            self.dialect = self.decoder.dialect = ninep.Dialect(reply.version)
        return reply


@contextmanager
def raw(address: str) -> Iterator[Raw]:
    addr = parse_address(address)
    sock = socket.socket(addr.family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(addr.target)
    try:
        yield Raw(sock)
    finally:
        sock.close()


def attach(r: Raw, fid: int = 1) -> object:
    r.send(ninep.Tattach(tag=1, fid=fid, afid=ninep.NOFID, uname="u", aname=""))
    return r.receive()


def test_E41_version_negotiation(server: str) -> None:
    """Ours differs from upstream on purpose (design.md): 9P2000.L is spoken,
    not downgraded to 9P2000, and msize is capped at 1 MiB rather than 16 KiB."""
    for asked, msize, version, granted in [
        ("9P2000.u", 65536, "9P2000.u", 65536),  # upstream: 16384
        ("9P2000.L", 8192, "9P2000.L", 8192),  # upstream: 9P2000
        ("9P2000", 16384, "9P2000", 16384),
        ("9P2000.e", 8192, "9P2000", 8192),  # any other 9P... is plain 9P2000
        ("9P2000.u", 64 << 20, "9P2000.u", 1 << 20),  # our default maximum
    ]:
        with raw(server) as r:
            reply = r.version(asked, msize)
            assert (reply.version, reply.msize, reply.tag) == (version, granted, ninep.NOTAG)
            assert isinstance(attach(r), ninep.Rattach)
    with raw(server) as r:
        # Not 9P at all: upstream closes silently; we answer `unknown`, then close.
        assert r.version("HTTP/1.1", 8192).version == "unknown"
        assert r.receive() is None


def test_E42_handshake_order(server: str) -> None:
    with raw(server) as r:
        reply = attach(r)
        assert isinstance(reply, ninep.Rerror) and reply.ename == "Expected Version message"
        assert r.receive() is None
    with raw(server) as r:
        r.version("9P2000.u", 8192)
        r.send(ninep.Tauth(tag=1, afid=7, uname="u", aname=""))
        reply = r.receive()
        assert isinstance(reply, ninep.Rerror) and reply.ename == "Expected Attach message"
        assert r.receive() is None
    with raw(server) as r:
        r.version("9P2000.u", 8192)
        assert isinstance(attach(r), ninep.Rattach)
        r.send(ninep.Tauth(tag=2, afid=7, uname="u", aname=""))
        reply = r.receive()
        assert isinstance(reply, ninep.Rerror) and reply.ename == "Function not implemented"
        r.send(ninep.Tversion(tag=3, msize=8192, version="9P2000.u"))
        reply = r.receive()
        assert isinstance(reply, ninep.Rerror) and reply.ename == "Function not implemented"
        # The session goes on: a second attach binds another root fid.
        assert isinstance(attach(r, fid=2), ninep.Rattach)
        reply = attach(r, fid=2)
        assert isinstance(reply, ninep.Rerror) and reply.ename == "Fid 2 already in use"


def test_E43_walk_errors(client: Client) -> None:
    client.mkdir("branch/master")
    assert error_of(client.walk, ".") == "'.' is not valid in 9p"
    assert error_of(client.walk, "branch/master/head/x") == "Can't walk from a file"
    newfid = 99
    message = error_of(
        client.rpc, ninep.Twalk, fid=client.root, newfid=newfid, wnames=("branch", "nothere", "ro")
    )
    assert message == "No such file or directory"  # the whole walk fails, no partial Rwalk
    assert error_of(client.rpc, ninep.Tclunk, fid=newfid) == f"Unknown fid {newfid}"
    fid = client.walk("branch")
    assert error_of(
        client.rpc, ninep.Twalk, fid=client.root, newfid=fid, wnames=("branch",)
    ) == f"Fid {fid} already in use"
    reply = client.rpc(ninep.Twalk, fid=fid, newfid=fid, wnames=("master", "ro"))
    assert isinstance(reply, ninep.Rwalk) and len(reply.qids) == 2
    assert client.rpc(ninep.Tstat, fid=fid).stat.name == "ro"  # type: ignore[attr-defined]
    # `..` at the attach root stays at the root.
    client.rpc(ninep.Twalk, fid=client.root, newfid=50, wnames=("..", "..", "branch"))
    assert client.rpc(ninep.Tstat, fid=50).stat.name == "branch"  # type: ignore[attr-defined]


def test_E44_fid_state_errors(client: Client) -> None:
    t = tx(client)
    fid = client.walk(f"{t}/msg")
    assert error_of(client.read_fid, fid, 0, 10) == "Can't read from unopened fid"
    assert error_of(client.write_fid, fid, b"x") == "Can't write to unopened fid"
    client.rpc(ninep.Topen, fid=fid, mode=ninep.ORDWR)
    assert error_of(client.rpc, ninep.Topen, fid=fid, mode=ninep.OREAD) == "Already open"
    d = client.open(f"{t}/rw")
    assert error_of(client.write_fid, d, b"x") == "Can't write to directories"
    assert error_of(
        client.rpc, ninep.Tcreate, fid=d, name="f", perm=0o644, mode=ninep.OWRITE, extension=""
    ) == "Can't create in an opened fid"
    assert error_of(client.rpc, ninep.Tclunk, fid=4242) == "Unknown fid 4242"
    h = client.walk("branch/master/head")
    assert error_of(client.rpc, ninep.Tremove, fid=h) == "Read-only file"
    assert error_of(client.rpc, ninep.Tclunk, fid=h) == f"Unknown fid {h}"  # clunked anyway


def _records(data: bytes) -> list[bytes]:
    """Split a directory read into stat records, checking that none is cut."""
    out = []
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 2], "little") + 2
        assert pos + size <= len(data), "partial stat record in a directory read"
        out.append(data[pos : pos + size])
        pos += size
    return out


def test_E45_directory_paging(client: Client) -> None:
    names = {f"file-{i:02d}": str(i).encode() for i in range(50)}
    commit_files(client, names)
    fid = client.open("branch/master/ro")
    offset = 0
    seen: list[str] = []
    replies = 0
    while True:
        data = client.read_fid(fid, offset, 200)
        records = _records(data)
        seen += [s.name for s in ninep.decode_stats(data, client.dialect)]
        assert len(records) == len(ninep.decode_stats(data, client.dialect))
        if not data:
            break
        replies += 1
        offset += len(data)
        if replies == 3:
            assert error_of(client.read_fid, fid, 0, 200) == "Can't seek in a directory"
            assert error_of(client.read_fid, fid, offset + 1, 200) == "Can't seek in a directory"
            assert client.read_fid(fid, offset, 10) == b""  # too small for a record: empty
    assert sorted(seen) == sorted(names)
    assert replies > 10  # 200 bytes hold only a few records each time


def test_E46_wstat_field_rules(client: Client) -> None:
    t = tx(client)
    client.create(f"{t}/rw/f", b"Hello")
    fid = client.walk(f"{t}/rw/f")
    wstat(client, fid)  # nothing set: a no-op ("sync", touch)
    assert error_of(wstat, client, fid, name="g", length=1) == (
        "Can't rename/truncate/chmod at the same time"
    )
    assert error_of(wstat, client, fid, length=1, mode=0o644) == (
        "Can't rename/truncate/chmod at the same time"
    )
    wstat(client, fid, length=3, mtime=12345, atime=1, uid="nobody")  # mtime etc. ignored
    assert client.read(f"{t}/rw/f") == b"Hel"
    d = client.walk(f"{t}/rw")
    wstat(client, d, length=0)
    assert error_of(wstat, client, d, length=3) == "Can't set length of a directory"
    assert error_of(wstat, client, client.root, name="x") == "Can't rename /"
    assert client.ls(f"{t}/rw") == ["f"]


def test_E47_flush_and_concurrency(client: Client, server: str) -> None:
    """Tflush of a blocked read: Rflush, and never an Rread for that tag.

    Beyond upstream (design.md, upstream issue #178): the flushed read is
    really cancelled, so it consumes nothing; the next read on the same fid
    sees the commit made after the flush.
    """
    h = commit_files(client, {"f": b"1", "g": b"other"})
    live = Stream(client, "branch/master/head.live")
    assert live.line() == f"{h}\n".encode()
    tag = live.start_read()  # blocks
    # Other requests on the same connection are answered meanwhile.
    assert client.read("branch/master/ro/g") == b"other"
    assert client.ls("branch/master/ro") == ["f", "g"]
    assert client.stat("branch/master/head").length == 41
    cancel(client, tag)
    with connect(server) as writer:
        h2 = commit_files(writer, {"f": b"2"})
        assert_silent(client)  # no Rread for the flushed tag, even now
        assert client.read("branch/master/head") == f"{h2}\n".encode()
        # Nothing was consumed by the cancelled read.
        reply = client.rpc(ninep.Tread, fid=live.fid, offset=live.offset, count=1000)
        assert reply.data == f"{h2}\n".encode()  # type: ignore[attr-defined]
    # Flushing an unknown tag (or NOTAG) is fine too.
    cancel(client, 4321)
    cancel(client, ninep.NOTAG)
    assert client.read("branch/master/ro/f") == b"2"


def _check_stat(st: ninep.Stat, *, dialect: ninep.Dialect) -> None:
    assert (st.type, st.dev, st.atime, st.mtime, st.qid.version) == (0, 0, 0, 0, 0)
    assert (st.uid, st.gid, st.muid) == ("root", "root", "none")
    if dialect is ninep.Dialect.U:
        assert (st.n_uid, st.n_gid, st.n_muid) == (0, 0, 0)
        if not st.mode & ninep.DMSYMLINK:
            assert st.extension == ""
    if st.mode & ninep.DMDIR:
        assert st.mode == ninep.DMDIR | 0o775
        assert st.qid.type == ninep.QTDIR and st.length == 0
    else:
        assert st.mode in (0o664, 0o775, ninep.DMSYMLINK | 0o775)
        assert not st.qid.type & ninep.QTDIR


def test_E48_stat_fields(client: Client, server: str) -> None:
    t = tx(client)
    client.create(f"{t}/rw/f", b"12345")
    symlink(client, f"{t}/rw/l", "target")
    commit(client, t)
    h = head(client)
    t = tx(client)
    paths = {
        "": 0, "branch": 0, "branch/master": 0, "branch/master/head": 41,
        "branch/master/head.live": 0, "branch/master/reflog": 0,
        "branch/master/fast-forward": 0, "branch/master/ro/f": 5,
        f"{t}/ctl": 0, f"{t}/msg": 0, f"{t}/rw/f": 5, f"snapshots/{h}/hash": 40,
        "branch/master/watch/tree.live": 0,
    }
    for path, length in paths.items():
        st = client.stat(path)
        _check_stat(st, dialect=client.dialect)
        assert st.length == length, path
    assert client.stat("").name == "/"
    assert client.stat("branch/master/ro/f").mode == 0o664
    link = client.stat("branch/master/ro/l")
    assert (link.mode, link.extension, link.length) == (ninep.DMSYMLINK | 0o775, "target", 6)
    # Directory listings carry the same records (every one with an extension in .u).
    fid = client.open("branch/master/ro")
    for st in ninep.decode_stats(client.read_fid(fid, 0), client.dialect):
        _check_stat(st, dialect=client.dialect)
    client.clunk(fid)
    with connect(server, version="9P2000") as legacy:
        for path in paths:
            if not path.startswith(t):
                _check_stat(legacy.stat(path), dialect=legacy.dialect)


def test_E49_errno(client: Client, server: str) -> None:
    """The exact string in 9P2000.u, with a real errno (ours; upstream sends 0),
    and Rlerror(ENOENT) in 9P2000.L (ours; upstream has no .L)."""
    with pytest.raises(RemoteError) as info:
        client.walk("nothere")
    assert info.value.message == "No such file or directory"
    assert info.value.errno == 2
    with connect(server, version="9P2000.L") as linux:
        with pytest.raises(RemoteError) as info:
            linux.walk("nothere")
        assert info.value.errno == 2
        linux.mkdir("branch/master")
        t = tx(linux)
        with pytest.raises(RemoteError) as info:
            linux.mkdir(t)
        assert info.value.errno == 17  # EEXIST
    with connect(server, version="9P2000") as legacy:
        with pytest.raises(RemoteError) as info:
            legacy.walk("nothere")
        assert info.value.message == "No such file or directory"


def test_E50_linux_shell_usage(client: Client, server: str) -> None:
    """The message sequences a v9fs mount sends for everyday shell commands.

    The real kernel client is exercised in tests/kernel (booted VM); here the
    same sequences are replayed by hand so the suite runs everywhere.
    """
    commit_files(client, {"src/Makefile": b"all: build", "README": b"hi"})
    t = tx(client)
    # cp -r branch/master/ro/* T/rw/  (walk, read, create, write per file)
    client.mkdir(f"{t}/rw/copy")
    pending = [""]
    while pending:
        d = pending.pop()
        for name, mode in client.listdir(f"branch/master/ro{d}"):
            path = f"{d}/{name}"
            if mode & ninep.DMDIR:
                client.mkdir(f"{t}/rw/copy{path}")
                pending.append(path)
            else:
                client.create(f"{t}/rw/copy{path}", client.read(f"branch/master/ro{path}"))
    # echo commit > T/ctl: Twstat(length=0, mtime=now), Topen(OWRITE|OTRUNC), Twrite, Tclunk.
    fid = client.walk(f"{t}/ctl")
    wstat(client, fid, length=0, mtime=1_700_000_000)
    client.rpc(ninep.Topen, fid=fid, mode=ninep.OWRITE | ninep.OTRUNC)
    assert client.rpc(ninep.Twrite, fid=fid, offset=0, data=b"commit\n").count == 7  # type: ignore[attr-defined]
    client.clunk(fid)
    assert client.read("branch/master/ro/copy/src/Makefile") == b"all: build"
    h = head(client)
    # cat branch/master/head: one line, then end of file.
    fid = client.open("branch/master/head")
    assert client.read_fid(fid, 0, client.iounit) == f"{h}\n".encode()
    assert client.read_fid(fid, 41, client.iounit) == b""
    client.clunk(fid)
    # cat branch/master/head.live: the head, then a new line after each commit.
    live = Stream(client, "branch/master/head.live")
    assert live.line() == f"{h}\n".encode()
    tag = live.start_read()
    with connect(server) as other:
        h2 = commit_files(other, {"README": b"changed"})
    assert live.finish_read(tag) == f"{h2}\n".encode()
    live.flush_reply()
    # ls -l everywhere: a walk and a Tstat for every entry of every directory.
    with connect(server) as ls:
        t2 = tx(ls)
        ls.create(f"{t2}/rw/new", b"x")
        echo(ls, f"{t2}/msg", b"m")
        pending = [""]
        count = 0
        while pending:
            d = pending.pop()
            for name, mode in ls.listdir(d):
                path = f"{d}/{name}".lstrip("/")
                st = ls.stat(path)
                assert st.name == name and st.mode == mode
                count += 1
                if mode & ninep.DMDIR:
                    pending.append(path)
        assert count > 50
