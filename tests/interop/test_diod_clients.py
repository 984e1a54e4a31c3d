"""Interop with diod's C clients (9P2000.L): diodls -l and diodcat against our server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from datakit.client.ninep_client import Client


@pytest.fixture(autouse=True)
def _need_diod() -> None:
    # Never skipped: .ci/run installs diod, and a missing client must fail loudly.
    assert shutil.which("diodcat"), "diod's clients are missing: apt-get install diod"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tcp_server() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datakit",
            "serve",
            "--example-tree",
            "--listen-9p",
            f"tcp://127.0.0.1:{port}",
        ]
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("server did not start") from None
            time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _diod(tool: str, server: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [tool, "-s", server, "-a", "/", *args], capture_output=True, timeout=60, check=False
    )


def test_diodcat_reads_byte_exact(tcp_server: str) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several messages at diod's 64 KiB msize
    with Client.connect(f"tcp://{tcp_server}") as c:
        c.mkdir("dir")
        c.create("dir/blob", payload)
        c.create("empty")
    result = _diod("diodcat", tcp_server, "/dir/blob")
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
    result = _diod("diodcat", tcp_server, "/empty")
    assert result.returncode == 0 and result.stdout == b""


def test_diodcat_missing_file_is_enoent(tcp_server: str) -> None:
    result = _diod("diodcat", tcp_server, "/nothing")
    assert result.returncode != 0
    assert b"No such file or directory" in result.stderr


def test_diodls_long_listing(tcp_server: str) -> None:
    with Client.connect(f"tcp://{tcp_server}") as c:
        c.mkdir("d")
        c.create("d/plain", b"12345")
        c.create("d/tool", b"#!/bin/sh\n", perm=0o755)
        c.mkdir("d/sub")
    result = _diod("diodls", tcp_server, "-l", "/d")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[-1]: line.split() for line in result.stdout.decode().splitlines()}
    assert set(lines) == {"plain", "tool", "sub"}
    assert lines["plain"][0].startswith("-rw-rw-r--") and lines["plain"][4] == "5"
    assert lines["tool"][0].startswith("-rwxrwxr-x") and lines["tool"][4] == "10"
    assert lines["sub"][0].startswith("drwxrwxr-x")
