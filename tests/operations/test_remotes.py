"""Fetches against hostile or dead remotes, on a real `datakit serve`
(issue #8 points 6-8): hung fetches never hold up commits and end when
their client leaves; endless or garbage answers fail fast; only the
schemes the operator allows are fetched."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import http.server
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datakit import ninep
from datakit.client.ninep_client import Client, RemoteError
from tests.gitdaemon import serve_repository
from tests.operations.procs import datakit_process
from tests.scenarios.helpers import Stream, cancel, start


class FakeRemote:
    """A TCP server; each connection gets ``answer(conn)`` in a thread.
    Remembers connections so a test can see which the server closed."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"git://127.0.0.1:{self.sock.getsockname()[1]}/repo"
        self.conns: list[socket.socket] = []
        self._answer = answer
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def closed_by_peer(self) -> int:
        """How many connections the fetching side has closed."""
        closed = 0
        for conn in list(self.conns):
            try:
                conn.setblocking(False)
                while conn.recv(65536):
                    pass
                closed += 1  # b"": end of stream
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        return closed

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@contextlib.contextmanager
def fake_remote(answer: Callable[[socket.socket], None]) -> Iterator[FakeRemote]:
    remote = FakeRemote(answer)
    try:
        yield remote
    finally:
        remote.close()


def silent(conn: socket.socket) -> None:
    """A remote that accepts and never answers."""


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def fetch(client: Client, name: str, url: str, branch: str = "master") -> None:
    client.mkdir(f"remotes/{name}")
    client.write(f"remotes/{name}/url", url.encode())
    client.write(f"remotes/{name}/fetch", branch.encode())


def fetch_error(port: int, url: str, branch: str = "master") -> str:
    with Client.connect(f"tcp://127.0.0.1:{port}") as client:
        with pytest.raises(RemoteError) as e:
            fetch(client, "r", url, branch)
    return str(e.value)


def test_commit_while_40_fetches_hang_and_fetches_end_with_their_client(tmp_path: Path) -> None:
    """Point 6: 40 fetches from a remote that never answers hold no thread a
    commit needs, and each stops (closes its connection to the remote)
    when its client disconnects."""
    with (
        fake_remote(silent) as remote,
        datakit_process(
            "--git", str(tmp_path / "db"),
            "--remote-connect-timeout", "3600", "--remote-timeout", "3600",
        ) as (port, _, _),
    ):  # fmt: skip
        clients = [Client.connect(f"tcp://127.0.0.1:{port}") for _ in range(40)]
        fetchers = [
            threading.Thread(target=_ignore_errors, args=(fetch, c, "r", remote.url), daemon=True)
            for c in clients
        ]
        for t in fetchers:
            t.start()
        wait_until(lambda: len(remote.conns) == 40, "40 fetches reach the remote")

        done = threading.Event()

        def commit() -> None:
            with Client.connect(f"tcp://127.0.0.1:{port}") as c:
                c.mkdir("branch/master")
                c.mkdir("branch/master/transactions/t")
                c.create("branch/master/transactions/t/rw/file", b"data")
                c.write("branch/master/transactions/t/ctl", b"commit\n")
                assert len(c.read("branch/master/head").strip()) == 40
            done.set()

        committer = threading.Thread(target=commit, daemon=True)
        committer.start()
        # Generous: only a commit stuck behind the fetches would take this long.
        committer.join(120)
        assert done.is_set(), "the commit waited for the hung fetches"
        assert all(t.is_alive() for t in fetchers)  # all 40 still hanging
        assert remote.closed_by_peer() == 0

        for c in clients:  # the clients go away: every fetch must stop
            c.close()
        wait_until(lambda: remote.closed_by_peer() == 40, "the fetches close their sockets")


def test_a_flushed_fetch_stops(tmp_path: Path) -> None:
    """Point 6: Tflush of the `fetch` write (Ctrl-C) stops the fetch: its
    connection to the remote is closed at once."""
    with (
        fake_remote(silent) as remote,
        datakit_process("--remote-connect-timeout", "3600", "--remote-timeout", "3600") as (
            port,
            _,
            _,
        ),
        Client.connect(f"tcp://127.0.0.1:{port}") as c,
    ):
        c.mkdir("remotes/r")
        c.write("remotes/r/url", remote.url.encode())
        fid = c.open("remotes/r/fetch", ninep.OWRITE)
        tag = start(c, ninep.Twrite, fid=fid, offset=0, data=b"master")
        wait_until(lambda: len(remote.conns) == 1, "the fetch reaches the remote")
        cancel(c, tag)
        wait_until(lambda: remote.closed_by_peer() == 1, "the flushed fetch closes its socket")
        c.clunk(fid)


def _ignore_errors(fn: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(Exception):
        fn(*args)


def endless_pkt_lines(conn: socket.socket) -> None:
    """A ref advertisement that never ends (valid pkt-lines forever)."""
    with contextlib.suppress(OSError):
        for n in range(10**9):
            data = b"1" * 40 + b" refs/heads/%d" % n + b"x" * 200 + b"\n"
            conn.sendall(b"%04x" % (len(data) + 4) + data)


def garbage(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while True:
            conn.sendall(os.urandom(65536))


def zero_bytes(conn: socket.socket) -> None:
    """/dev/zero over TCP."""
    with contextlib.suppress(OSError):
        while True:
            conn.sendall(bytes(65536))


def unterminated_pkt_line(conn: socket.socket) -> None:
    """Announces a 65520-byte pkt-line, sends 10 bytes of it, then nothing."""
    with contextlib.suppress(OSError):
        conn.sendall(b"fff0" + b"0" * 10)
        time.sleep(3600)


def test_endless_garbage_and_stalled_remotes_fail_fast(tmp_path: Path) -> None:
    """Point 7: endless or garbage bytes, or a pkt-line never finished, give
    a clear error, fast and with bounded memory."""
    with (
        fake_remote(endless_pkt_lines) as endless,
        fake_remote(garbage) as noise,
        fake_remote(zero_bytes) as zeros,
        fake_remote(unterminated_pkt_line) as stalled,
        fake_remote(silent) as mute,
        datakit_process(
            "--git", str(tmp_path / "db"), "--remote-schemes", "git,file",
            "--remote-connect-timeout", "1", "--remote-timeout", "2",
        ) as (port, _, proc),
    ):  # fmt: skip
        message = fetch_error(port, endless.url)
        assert message == (
            f"error: cannot fetch {endless.url}: the remote sent a ref advertisement "
            f"larger than {16 * 1024 * 1024} bytes"
        )
        message = fetch_error(port, noise.url)
        assert message.startswith(f"error: cannot fetch {noise.url}: bad answer from the remote: ")
        message = fetch_error(port, zeros.url)
        assert message.startswith(f"error: cannot fetch {zeros.url}: bad answer from the remote: ")
        assert fetch_error(port, stalled.url) == (
            f"error: cannot fetch {stalled.url}: no data from the remote for 2 s"
        )
        assert fetch_error(port, mute.url) == (
            f"error: cannot fetch {mute.url}: no answer from the remote within 1 s"
        )
        # A local "repository" that is a device or a FIFO: git upload-pack
        # refuses it (nothing is read from the server's side).
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        for source in ("/dev/zero", str(fifo), f"file://{fifo}"):
            assert fetch_error(port, source).startswith(f"error: cannot fetch {source}")
        # A repository whose ref is a FIFO: git upload-pack blocks reading
        # it, and is killed after the inactivity timeout.
        repo = tmp_path / "repo"
        repo.mkdir()
        with serve_repository(repo):
            os.unlink(repo / ".git" / "refs" / "heads" / "master")
            os.mkfifo(repo / ".git" / "refs" / "heads" / "master")
            message = fetch_error(port, str(repo))
        assert message.startswith(f"error: cannot fetch {repo}"), message
        rss = _rss_kib(proc.pid)
        assert rss < 256 * 1024, f"server uses {rss} KiB"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the peak: what the endless remote made it hold
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_remote_schemes_flag(tmp_path: Path) -> None:
    """Point 8: local paths, file:// and ssh:// only when the operator allows
    them; the default allows git, http and https."""
    repo = tmp_path / "repo"
    repo.mkdir()
    with serve_repository(repo) as git_remote, datakit_process() as (port, _, _):
        for url in (str(repo / ".git"), f"file://{repo}", "ssh://example.invalid/x", "h:x"):
            message = fetch_error(port, url)
            assert message.startswith(f"error: cannot fetch {url}: "), message
            assert "not allowed by this server" in message
            assert "--remote-schemes" in message
        with Client.connect(f"tcp://127.0.0.1:{port}") as c:
            fetch(c, "ok", git_remote.url)
            assert Stream(c, "remotes/ok/head").line().decode().strip() == git_remote.master
    with datakit_process("--remote-schemes", "file") as (port, _, _):
        with Client.connect(f"tcp://127.0.0.1:{port}") as c:
            fetch(c, "local", f"file://{repo}")
            assert Stream(c, "remotes/local/head").line().decode().strip() == git_remote.master
        assert "not allowed" in fetch_error(port, git_remote.url)


def test_remote_flags_are_checked() -> None:
    for args, expected in (
        (["--remote-schemes", "git,gopher"], "--remote-schemes: unknown scheme 'gopher'"),
        (["--remote-timeout", "0"], "--remote-timeout"),
        (["--remote-connect-timeout", "x"], "--remote-connect-timeout"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "datakit", "serve", *args], capture_output=True, timeout=60
        )
        assert out.returncode == 2
        assert expected in out.stderr.decode()


def test_malformed_urls_and_credentials(tmp_path: Path) -> None:
    """URLs a client may write are refused with a clear error, never an
    internal one, and a password in a URL is never shown: not in the error
    the client reads, not in the server's log (even at -vv)."""
    log = tmp_path / "log"
    with (
        fake_remote(garbage) as noise,
        open(log, "wb") as err,
        datakit_process(
            "-vv", "--git", str(tmp_path / "db"), "--remote-connect-timeout", "2", stderr=err
        ) as (port, _, _),
    ):  # fmt: skip
        for url in (
            "git://host:99999/x", "git://[::1", "http://[::1", "https://h:-1/x",
            "git://h/a\nb", "http://h/\0",
        ):  # fmt: skip
            message = fetch_error(port, url)
            assert message.startswith("error: cannot fetch "), message
            assert "malformed URL" in message or "control character" in message, message
        port_of = noise.url.split(":")[2].split("/")[0]
        for url in (
            f"http://user:s3cr3t@127.0.0.1:{port_of}/x",
            f"git://user:s3cr3t@127.0.0.1:{port_of}/x",
            "https://user:s3cr3t@127.0.0.1:1/x",
            "http://user:s3cr3t@[::1/x",
        ):
            message = fetch_error(port, url)
            assert message.startswith("error: cannot fetch "), message
            assert "s3cr3t" not in message, message
            assert "user:***@" in message, message
    text = log.read_bytes()
    assert b"fetch" in text  # the failures were logged
    assert b"s3cr3t" not in text
    assert b"Internal error" not in text and b"Traceback" not in text


def _pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def _advertise_and_negotiate(conn: socket.socket, sha: str) -> None:
    """Play a git:// server up to the pack: advertise ``sha`` as master, read
    the client's wants until its ``done``, answer NAK."""
    conn.recv(65536)
    conn.sendall(_pkt(sha.encode() + b" refs/heads/master\0ofs-delta\n") + b"0000")
    request = b""
    while b"done" not in request:
        request += conn.recv(65536) or b"done"
    conn.sendall(_pkt(b"NAK\n"))


def _bomb_pack(size: int) -> tuple[str, bytes]:
    """A pack of one blob of ``size`` zero bytes: about size / 1000 bytes."""
    zeros = b"\0" * (1 << 20)
    sha = hashlib.sha1(b"blob %d\0" % size)
    packed = zlib.compressobj(9)
    body = [b"PACK", struct.pack(">II", 2, 1)]
    header, n = bytearray([0x30 | (size & 0x0F)]), size >> 4  # type 3: blob
    while n:
        header[-1] |= 0x80
        header.append(n & 0x7F)
        n >>= 7
    body.append(bytes(header))
    for _ in range(size // len(zeros)):
        sha.update(zeros)
        body.append(packed.compress(zeros))
    body.append(packed.flush())
    pack = b"".join(body)
    return sha.hexdigest(), pack + hashlib.sha1(pack).digest()


def test_a_decompression_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    """Point 7: a pack of 1 MiB whose one object inflates to 1 GiB is
    refused before it is inflated (objects bigger than --max-file-size
    cannot be fetched), and the server's memory stays small."""
    sha, pack = _bomb_pack(1 << 30)
    assert len(pack) < 2 << 20

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _advertise_and_negotiate(conn, sha)
            conn.sendall(pack)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1)

    for store in (["--git", str(tmp_path / "db")], []):
        with (
            fake_remote(answer) as bomb,
            datakit_process(*store, "--max-file-size", "64M") as (port, _, proc),
        ):
            message = fetch_error(port, bomb.url)
            assert message == (
                f"error: cannot fetch {bomb.url}: object 0 of the pack is larger than "
                f"{64 << 20} bytes"
            ), message
            rss = _rss_kib(proc.pid)
            assert rss < 256 * 1024, f"server uses {rss} KiB"
    assert not [p for p in (tmp_path / "db" / "objects").rglob("*") if p.is_file()]


def drip(conn: socket.socket) -> None:
    """A remote that sends one byte of a never-ending ref line every 0.2 s:
    never inactive for long, never done."""
    with contextlib.suppress(OSError):
        conn.sendall(b"ffff")
        while True:
            conn.sendall(b"a")
            time.sleep(0.2)


def test_a_dripping_remote_ends_at_the_time_limit(tmp_path: Path) -> None:
    """Point 6: the inactivity timeout counts from the last byte, so a
    remote dripping bytes would hold a fetch forever; --remote-max-time
    bounds the whole fetch."""
    with (
        fake_remote(drip) as dripping,
        datakit_process("--remote-timeout", "2", "--remote-max-time", "3") as (port, _, _),
    ):
        start = time.monotonic()
        message = fetch_error(port, dripping.url)
        assert message == f"error: cannot fetch {dripping.url}: the fetch took more than 3 s"
        assert time.monotonic() - start < 30
        wait_until(lambda: dripping.closed_by_peer() == 1, "the fetch closes its connection")


def test_remote_names_follow_the_name_rule() -> None:
    """A remote is a directory under remotes/: names a tree could not hold
    (".", "..", NUL, too long) are refused there too (EINVAL, ENAMETOOLONG),
    by mkdir and by rename, and nothing is made."""
    with datakit_process() as (port, _, _), Client.connect(f"tcp://127.0.0.1:{port}") as c:
        c.mkdir("remotes/origin")
        for name in (".", "..", "a\0b", ".git"):
            for make in (c.mkdir, lambda path: c.rename("remotes/origin", path[1])):
                with pytest.raises(RemoteError) as e:
                    make(("remotes", name))
                assert e.value.errno == errno.EINVAL, (name, e.value)
                assert "Invalid name" in e.value.message
        with pytest.raises(RemoteError) as e:
            c.mkdir(("remotes", "x" * 300))
        assert e.value.errno == errno.ENAMETOOLONG
        assert c.ls("remotes") == ["origin"]


def test_dumb_http_is_refused(tmp_path: Path) -> None:
    """Point 7: a web server that is not git's smart HTTP (static files:
    "dumb" HTTP) makes a fetch read every object whole, uncounted: one
    loose object of 1 MiB inflating to 1 GiB cost as much memory. Only the
    smart protocol, whose pack is checked with bounded memory, is spoken."""
    sha = "1" * 40
    (tmp_path / "info").mkdir()
    (tmp_path / "info" / "refs").write_text(f"{sha}\trefs/heads/master\n")
    (tmp_path / "objects" / "info").mkdir(parents=True)
    (tmp_path / "objects" / "info" / "packs").write_text("")
    bomb = zlib.compressobj(9)
    zeros = b"\0" * (1 << 20)
    loose = [bomb.compress(b"blob %d\0" % (1 << 30))]
    loose += [bomb.compress(zeros) for _ in range(1024)]
    (tmp_path / "objects" / sha[:2]).mkdir()
    (tmp_path / "objects" / sha[:2] / sha[2:]).write_bytes(b"".join(loose) + bomb.flush())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_address[1]}/"
    try:
        with datakit_process() as (port, _, proc):
            message = fetch_error(port, url)
            rss = _rss_kib(proc.pid)
            assert rss < 256 * 1024, f"server uses {rss} KiB"
            assert message == (
                f"error: cannot fetch {url}: bad answer from the remote: "
                "not git's smart HTTP protocol (dumb HTTP is not supported)"
            ), message
    finally:
        web.shutdown()
        web.server_close()


def test_a_fetch_flushed_mid_pack_leaves_nothing(tmp_path: Path) -> None:
    """Point 6: a fetch flushed while the pack arrives, or whose client
    disconnects then, leaves no temporary file and nothing stored."""
    sha, pack = _bomb_pack(1 << 20)

    def half_a_pack(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _advertise_and_negotiate(conn, sha)
            conn.sendall(pack[: len(pack) // 2])
            conn.recv(1)  # until the fetching side closes

    db = tmp_path / "db"
    with (
        fake_remote(half_a_pack) as remote,
        datakit_process("--git", str(db), "--remote-timeout", "3600") as (port, _, _),
    ):
        for way in ("flush", "disconnect"):
            c = Client.connect(f"tcp://127.0.0.1:{port}")
            c.mkdir("remotes/r")
            c.write("remotes/r/url", remote.url.encode())
            fid = c.open("remotes/r/fetch", ninep.OWRITE)
            tag = start(c, ninep.Twrite, fid=fid, offset=0, data=b"master")
            wait_until(
                lambda: any(p.is_file() for p in (db / "objects").rglob("tmp_*")),
                "the pack is being received",
            )
            if way == "flush":
                cancel(c, tag)
            c.close()
            wait_until(
                lambda: not [p for p in (db / "objects").rglob("*") if p.is_file()],
                f"the {way} removes the temporary pack",
            )


def test_the_remotes_words_reach_the_client_without_control_characters(tmp_path: Path) -> None:
    """An "ERR" line of the remote is shown in the fetch's error, but its
    control characters (a terminal escape, NUL) are not: the error goes to
    the client's terminal and log, as git shows them ("?")."""

    def refusing(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(_pkt(b"ERR \x1b[2Jaccess \x00denied\r\n"))

    with fake_remote(refusing) as remote, datakit_process() as (port, _, _):
        message = fetch_error(port, remote.url)
    assert message == (
        f"error: cannot fetch {remote.url}: bad answer from the remote: ?[2Jaccess ?denied"
    ), repr(message)


def _many_objects_pack(count: int) -> tuple[str, bytes]:
    """A pack whose head commit has one file, plus ``count`` more blobs:
    quick to send, long to check."""

    def obj(kind: int, name: bytes, raw: bytes) -> tuple[str, bytes]:
        sha = hashlib.sha1(b"%s %d\0" % (name, len(raw)) + raw).hexdigest()
        header = bytearray([kind << 4 | (len(raw) & 0x0F)])
        if len(raw) >= 16:  # all of them are shorter than 2 KiB
            header[0] |= 0x80
            header.append(len(raw) >> 4)
        return sha, bytes(header) + zlib.compress(raw, 1)

    blob_sha, blob = obj(3, b"blob", b"x\n")
    tree_sha, tree = obj(2, b"tree", b"100644 a\0" + bytes.fromhex(blob_sha))
    ident = b"t <t@e> 1 +0000"
    body = b"tree %s\nauthor %s\ncommitter %s\n\nm\n" % (tree_sha.encode(), ident, ident)
    commit_sha, commit = obj(1, b"commit", body)
    parts = [b"PACK", struct.pack(">II", 2, count + 3), commit, tree, blob]
    parts += [obj(3, b"blob", b"%x" % i)[1] for i in range(count)]
    pack = b"".join(parts)
    return commit_sha, pack + hashlib.sha1(pack).digest()


def test_a_fetch_flushed_while_its_pack_is_checked_stops(tmp_path: Path) -> None:
    """Point 6: the flush of a fetch whose remote has sent everything stops
    the check of the pack too: nothing is stored, the temporary pack goes."""
    sha, pack = _many_objects_pack(400_000)

    def whole_pack(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _advertise_and_negotiate(conn, sha)
            conn.sendall(pack)
            conn.close()

    db = tmp_path / "db"
    with (
        fake_remote(whole_pack) as remote,
        datakit_process("--git", str(db)) as (port, _, _),
        Client.connect(f"tcp://127.0.0.1:{port}") as c,
    ):
        c.mkdir("remotes/r")
        c.write("remotes/r/url", remote.url.encode())
        fid = c.open("remotes/r/fetch", ninep.OWRITE)
        tag = start(c, ninep.Twrite, fid=fid, offset=0, data=b"master")
        temporary = db / "objects" / "pack"
        wait_until(
            lambda: sum(p.stat().st_size for p in temporary.glob("tmp_*")) >= len(pack),
            "the whole pack is received",
        )
        cancel(c, tag)
        wait_until(lambda: not list(temporary.glob("tmp_*")), "the check stops")
        assert not list(temporary.glob("pack-*")), "the flushed fetch was stored"


def test_a_flushed_http_fetch_stops(tmp_path: Path) -> None:
    """Point 6: as for git://, the flush of a fetch from an http(s) remote
    that has not answered yet closes its connection at once."""
    with (
        fake_remote(silent) as remote,
        datakit_process("--remote-connect-timeout", "3600", "--remote-timeout", "3600") as (
            port,
            _,
            _,
        ),
        Client.connect(f"tcp://127.0.0.1:{port}") as c,
    ):
        for scheme in ("http", "https"):
            c.mkdir(f"remotes/{scheme}")
            c.write(f"remotes/{scheme}/url", remote.url.replace("git", scheme, 1).encode())
            fid = c.open(f"remotes/{scheme}/fetch", ninep.OWRITE)
            tag = start(c, ninep.Twrite, fid=fid, offset=0, data=b"master")
            wait_until(lambda: len(remote.conns) == 1, "the fetch reaches the remote")
            cancel(c, tag)
            wait_until(lambda: remote.closed_by_peer() == 1, f"the flushed {scheme} fetch stops")
            c.clunk(fid)
            remote.conns.pop().close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


def _delta_chain_pack(size: int, depth: int) -> bytes:
    """A pack of a ``size``-byte blob of zeros and ``depth`` levels of two
    deltas each (each makes a new ``size``-byte object from the level
    before): some KiB that take seconds to inflate and check."""
    header = bytearray([0x30 | 0x80 | (size & 0x0F)])
    header += _varint(size >> 4)
    body = bytearray(b"PACK" + struct.pack(">II", 2, 1 + 2 * depth))
    base = len(body)
    body += header + zlib.compress(b"\0" * size, 9)
    copy = size - 8  # after 8 new bytes, copy the rest of the base (at most 2^24 - 1)
    for level in range(depth):
        for kind in (b"C", b"L"):
            delta = _varint(size) + _varint(size) + b"\x08" + kind + b"%07d" % level
            delta += bytes([0xF1, 8, copy & 0xFF, copy >> 8 & 0xFF, copy >> 16])
            here, distance = len(body), len(body) - base
            offset = bytearray([distance & 0x7F])  # git's offset encoding
            distance >>= 7
            while distance:
                distance -= 1
                offset.insert(0, 0x80 | distance & 0x7F)
                distance >>= 7
            body += bytes([0x60 | 0x80 | (len(delta) & 0x0F)]) + _varint(len(delta) >> 4)
            body += offset + zlib.compress(delta)
            if kind == b"C":
                chained = here
        base = chained
    return bytes(body) + hashlib.sha1(body).digest()


def test_the_time_limit_covers_checking_the_pack(tmp_path: Path) -> None:
    """Point 6: a pack of some KiB whose deltas make gigabytes to check is
    received at once but takes long to check: --remote-max-time bounds the
    whole fetch, the check included."""
    pack = _delta_chain_pack(16 << 20, 400)
    assert len(pack) < 100_000

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _advertise_and_negotiate(conn, "1" * 40)
            conn.sendall(pack)
            conn.close()  # all sent

    with (
        fake_remote(answer) as remote,
        datakit_process("--git", str(tmp_path / "db"), "--remote-max-time", "1") as (port, _, _),
    ):
        message = fetch_error(port, remote.url)
    assert message == f"error: cannot fetch {remote.url}: the fetch took more than 1 s"


def test_a_refused_pack_costs_an_in_memory_server_no_memory(tmp_path: Path) -> None:
    """Point 7: an in-memory server checks a pack the same way, without
    holding what its deltas make: 60 KiB making 3 GiB of objects, refused
    (its head is missing), leave the server small."""
    pack = _delta_chain_pack(16 << 20, 100)

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _advertise_and_negotiate(conn, "1" * 40)
            conn.sendall(pack)
            conn.close()

    with fake_remote(answer) as remote, datakit_process() as (port, _, proc):
        message = fetch_error(port, remote.url)
        assert message.endswith("named by the fetched head is missing"), message
        rss = _rss_kib(proc.pid)
        assert rss < 512 * 1024, f"server uses {rss} KiB"


def test_a_stopped_local_fetch_leaves_no_git_process(tmp_path: Path) -> None:
    """Point 7: a local repository whose object is a FIFO blocks git
    pack-objects (started by git upload-pack); the fetch times out and
    every git process it started goes, not only upload-pack."""
    repo = tmp_path / "repo"
    repo.mkdir()
    with serve_repository(repo):
        pass
    blob = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD:foo"], capture_output=True, text=True
    ).stdout.strip()
    loose = repo / ".git" / "objects" / blob[:2] / blob[2:]
    loose.unlink()
    os.mkfifo(loose)

    def running_in_repo() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd").startswith(str(repo)):
                    found.append((entry / "cmdline").read_bytes().decode(errors="replace"))
        return found

    with datakit_process("--remote-schemes", "file", "--remote-timeout", "1") as (port, _, _):
        message = fetch_error(port, str(repo))
        # git upload-pack's own --timeout may end it first: no reason then.
        assert message.startswith(f"error: cannot fetch {repo}"), message
        wait_until(lambda: not running_in_repo(), "no git process is left", timeout=10)
