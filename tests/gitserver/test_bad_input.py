"""Hostile or broken Git clients (raw sockets): each gets an error or is
disconnected, alone; the server goes on serving git and 9p clients."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.client import connect
from tests.gitrepo import git
from tests.operations.procs import datakit_ports

CAPS = b"multi_ack_detailed side-band-64k thin-pack ofs-delta"


def pkt(data: bytes | None) -> bytes:
    return b"0000" if data is None else b"%04x" % (len(data) + 4) + data


def read_pkt(sock: socket.socket) -> bytes | None:
    head = recv_exactly(sock, 4)
    size = int(head, 16)
    return None if size == 0 else recv_exactly(sock, size - 4)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {data!r}")
        data += chunk
    return data


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


class Server:
    def __init__(self, ports: dict[str, int]) -> None:
        self.git_port = ports["git"]
        self.url = f"git://127.0.0.1:{ports['git']}/"
        self.conn = connect(f"tcp://127.0.0.1:{ports['9p']}", timeout=30)

    def dial(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.git_port), timeout=30)
        return sock

    def commit(self, branch: str, name: str, data: bytes) -> str:
        b = self.conn.branch(branch)
        with b.transaction() as t:
            t.create_or_replace_file(name, data)
            t.commit(f"write {name}")
        head = b.head()
        assert head is not None
        return head.id

    def still_serves(self, tmp_path: Path) -> None:
        """A 9p commit and a real clone both work."""
        head = self.commit("master", "after", os.urandom(8).hex().encode())
        clone = tmp_path / f"clone-{time.monotonic_ns()}"
        git(None, "clone", "-q", "--bare", self.url, str(clone))
        assert git(clone, "rev-parse", "master") == head


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    extra = getattr(request, "param", ())
    with datakit_ports("--listen-git", "tcp://127.0.0.1:0", "--git-timeout", "2", *extra) as (
        ports,
        _proc,
    ):
        s = Server(ports)
        s.commit("master", "first", b"1\n")
        yield s
        s.conn.close()


def test_garbage_length_prefix(server: Server, tmp_path: Path) -> None:
    with server.dial() as sock:
        sock.sendall(b"zzzzgit-upload-pack /\0")
        answer = read_all(sock)
    assert answer.startswith(b"00") and b"ERR " in answer, answer
    server.still_serves(tmp_path)


def test_unknown_service(server: Server, tmp_path: Path) -> None:
    with server.dial() as sock:
        sock.sendall(pkt(b"git-frobnicate /\0host=x\0"))
        answer = read_all(sock)
    assert b"ERR unknown service 'git-frobnicate'" in answer, answer
    server.still_serves(tmp_path)


def test_request_without_path_terminator(server: Server, tmp_path: Path) -> None:
    with server.dial() as sock:
        sock.sendall(pkt(b"git-upload-pack"))
        answer = read_all(sock)
    assert b"ERR expected `git-upload-pack PATH" in answer, answer
    server.still_serves(tmp_path)


def test_want_of_a_missing_object(server: Server, tmp_path: Path) -> None:
    with server.dial() as sock:
        sock.sendall(pkt(b"git-upload-pack /\0host=x\0"))
        while read_pkt(sock) is not None:  # the advertisement
            pass
        sock.sendall(pkt(b"want " + b"1" * 40 + b" " + CAPS + b"\n") + pkt(None) + pkt(b"done\n"))
        answer = read_all(sock)
    assert b"ERR Client wants invalid object" in answer, answer
    server.still_serves(tmp_path)


def test_client_stalled_mid_negotiation_is_disconnected(server: Server, tmp_path: Path) -> None:
    head = server.commit("master", "x", b"x").encode()
    with server.dial() as sock:
        sock.sendall(pkt(b"git-upload-pack /\0host=x\0"))
        while read_pkt(sock) is not None:
            pass
        sock.sendall(pkt(b"want " + head + b" " + CAPS + b"\n"))
        # ...and nothing more. Meanwhile others are served.
        server.still_serves(tmp_path)
        started = time.monotonic()
        answer = read_all(sock)  # closed by the server (--git-timeout 2)
        assert answer == pkt(b"ERR timed out: nothing received for 2 s"), answer
        assert time.monotonic() - started < 25


def test_client_that_never_reads_its_pack(server: Server, tmp_path: Path) -> None:
    head = server.commit("master", "big", os.urandom(8 << 20))  # does not compress
    with server.dial() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(pkt(b"git-upload-pack /\0host=x\0"))
        while read_pkt(sock) is not None:
            pass
        sock.sendall(pkt(b"want " + head.encode() + b" " + CAPS + b"\n") + pkt(None))
        sock.sendall(pkt(b"done\n"))
        time.sleep(0.5)  # the server is blocked sending now
        server.still_serves(tmp_path)
        # Disconnected once the send made no progress for --git-timeout.
        sock.settimeout(60)
        received = 0
        time.sleep(4)
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
        assert received < 8 << 20, received


@pytest.mark.parametrize("server", [("--max-git-connections", "2")], indirect=True)
def test_connections_past_the_bound_are_closed(server: Server, tmp_path: Path) -> None:
    idle = [server.dial() for _ in range(2)]
    try:
        time.sleep(0.3)
        with server.dial() as third:
            try:
                third.sendall(pkt(b"git-upload-pack /\0host=x\0"))
                answer = read_all(third)
            except ConnectionResetError:
                answer = b""
            assert answer == b""  # closed at once, nothing said
        assert server.commit("master", "meanwhile", b"9p works\n")
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    server.still_serves(tmp_path)


def test_sigterm_ends_a_stalled_git_connection(tmp_path: Path) -> None:
    """The server stops at once on SIGTERM even while a git client holds a
    connection in the middle of a request (its worker thread is woken)."""
    with datakit_ports("--listen-git", "tcp://127.0.0.1:0", "--git", str(tmp_path / "db")) as (
        ports,
        proc,
    ):
        s = Server(ports)
        s.commit("master", "f", b"f")
        s.conn.close()
        sock = s.dial()
        sock.sendall(pkt(b"git-upload-pack /\0host=x\0"))
        while read_pkt(sock) is not None:
            pass  # now the server waits for wants, for up to --git-timeout (60 s)
        proc.terminate()
        assert proc.wait(15) == 0
        assert read_all(sock) == b""
        sock.close()


def test_want_lines_past_the_bound_are_refused(server: Server) -> None:
    """Found in review: v0 kept every want line (95 MB of them: +170 MiB)."""
    head = server.commit("master", "w", b"w")
    line = pkt(b"want " + head.encode() + b"\n")
    with server.dial() as sock:
        sock.sendall(pkt(b"git-upload-pack /\0host=x\0"))
        while read_pkt(sock) is not None:
            pass
        sock.sendall(pkt(b"want " + head.encode() + b" " + CAPS + b"\n"))
        try:
            for _ in range(100_001 // 1000 + 1):
                sock.sendall(line * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        answer = read_all(sock)
    assert b"ERR too many want lines (at most 100000)" in answer, answer[-200:]


@pytest.mark.parametrize("depth", [b"0", b"-1", b"x"])
def test_a_bad_depth_is_refused(server: Server, depth: bytes) -> None:
    head = server.commit("master", "d", b"d")
    with server.dial() as sock:
        sock.sendall(pkt(b"git-upload-pack /\0host=x\0"))
        while read_pkt(sock) is not None:
            pass
        sock.sendall(pkt(b"want " + head.encode() + b" " + CAPS + b" shallow\n"))
        sock.sendall(pkt(b"deepen " + depth) + pkt(None))
        answer = read_all(sock)
    assert b"ERR invalid deepen '" + depth + b"': a positive number of commits" in answer, answer


def test_a_have_that_is_a_tree_is_not_acknowledged(server: Server) -> None:
    """Found in review: dulwich acknowledged any object, then its "ready"
    check failed on the tree (`ERR min() arg is an empty sequence`)."""
    head = server.commit("master", "t", b"t")
    tree = server.conn.branch("master").head()
    assert tree is not None
    with server.dial() as sock:
        sock.sendall(pkt(b"git-upload-pack /\0host=x\0"))
        while read_pkt(sock) is not None:
            pass
        sock.sendall(pkt(b"want " + head.encode() + b" " + CAPS + b"\n") + pkt(None))
        sock.sendall(pkt(b"have " + tree.tree_id.encode() + b"\n") + pkt(b"done\n"))
        answer = read_all(sock)
    assert b"ACK " + tree.tree_id.encode() not in answer
    assert b"ERR" not in answer and b"PACK" in answer, answer[:300]


def test_a_filter_is_refused_not_ignored(server: Server) -> None:
    """Partial clones are not offered: a filter line must not get a full pack."""
    head = server.commit("master", "p", b"p")
    with server.dial() as sock:
        sock.sendall(pkt(b"git-upload-pack /\0host=x\0"))
        while read_pkt(sock) is not None:
            pass
        sock.sendall(pkt(b"want " + head.encode() + b" " + CAPS + b"\n"))
        sock.sendall(pkt(b"filter blob:none\n") + pkt(None) + pkt(b"done\n"))
        answer = read_all(sock)
    assert b"ERR filter: partial clones are not offered" in answer, answer
    assert b"PACK" not in answer
