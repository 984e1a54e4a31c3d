"""Connections are bounded so idle sockets never starve the store of fds."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

from datakit.client.ninep_client import Client, ConnectionClosed
from tests.operations.procs import datakit_process
from tests.scenarios.helpers import commit_files, head


def idle_sockets(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(s)
    return socks


def closed_by_server(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Those of `socks` the server closes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    waiting, closed = list(socks), []
    while waiting and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(waiting, [], [], left)
        for s in ready:
            try:
                data = s.recv(1)
            except OSError:  # reset
                data = b""
            assert data == b"", "the server sent something to an idle socket"
            closed.append(s)
            waiting.remove(s)
    return closed


def test_idle_connections_beyond_the_bound_never_starve_commits(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with (
        log.open("wb") as err,
        datakit_process("--git", str(tmp_path / "db"), nofile=(128, 128), stderr=err) as (
            port,
            _,
            _,
        ),
    ):
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            socks = idle_sockets(port, 150)  # more than the 128 fds the server has
            try:
                # The default bound (fd limit 128: (128 - 64) // 2 = 32 connections,
                # the commit's included) turns the rest away at once.
                refused = closed_by_server(socks, 5)
                assert len(refused) >= len(socks) - 31
                assert socks[0] not in refused  # within the bound: served
                size_after_flood = log.stat().st_size
                # The store still has the fds a commit needs.
                new_head = commit_files(c, {f"f{i}": b"x" for i in range(20)})
                assert head(c) == new_head
                time.sleep(1)  # and nothing keeps logging about the flood
                assert log.stat().st_size == size_after_flood
            finally:
                for s in socks:
                    s.close()
        # Places free up once the server sees the sockets closed.
        deadline = time.monotonic() + 10
        while True:
            try:
                again = Client.connect(f"tcp://127.0.0.1:{port}", timeout=30)
                break
            except (ConnectionError, ConnectionClosed):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with again:
            assert head(again) == new_head
    text = log.read_text()
    assert "Too many open files" not in text
    assert text.count("connections open") == 1, text  # said once, not per refusal


def test_max_connections_option(tmp_path: Path) -> None:
    with datakit_process("--max-connections", "3") as (port, _, _):
        clients = [Client.connect(f"tcp://127.0.0.1:{port}", timeout=10) for _ in range(3)]
        try:
            extra = socket.create_connection(("127.0.0.1", port), timeout=10)
            assert closed_by_server([extra], 5) == [extra]
            extra.close()
            assert all(c.ls() for c in clients)
        finally:
            for c in clients:
                c.close()


def test_the_soft_fd_limit_is_raised_to_the_hard_one() -> None:
    with datakit_process(nofile=(128, 4096)) as (_, _, proc):
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert line.split()[3:5] == ["4096", "4096"], line


def test_a_flood_of_scrapers_is_named_as_such(tmp_path: Path) -> None:
    """Past 16 open scrapes the metrics endpoint closes new connections, and
    its warning names the scrapes, not the 9p --max-connections bound."""
    log = tmp_path / "server.log"
    with log.open("wb") as err, datakit_process(stderr=err) as (port, mport, _):
        socks = idle_sockets(mport, 20)
        try:
            assert len(closed_by_server(socks, 5)) >= 4
            with Client.connect(f"tcp://127.0.0.1:{port}", timeout=10) as c:
                assert c.ls()  # 9p is not affected
        finally:
            for s in socks:
                s.close()
    text = log.read_text()
    assert "metrics scrapes open" in text, text
    assert "--max-connections" not in text, text
