"""What `datakit serve` says at start, and its Unix socket's life cycle."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from datakit.client.ninep_client import Client
from tests.ports import free_port


@contextmanager
def server(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "datakit", "serve", *args], stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def lines_until(proc: subprocess.Popen[str], last: str) -> list[str]:
    """stderr lines up to the one containing `last` (the server is then up)."""
    assert proc.stderr is not None
    lines = []
    while True:
        line = proc.stderr.readline()
        assert line, f"server exited: {lines}"
        lines.append(line.rstrip("\n"))
        if last in line:
            return lines


def wait_for_socket(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_startup_lines_and_socket_removed_on_shutdown(tmp_path: Path, stop: int) -> None:
    sock = tmp_path / "dk.sock"
    port, mport = free_port(), free_port()
    with server(
        "--listen-9p",
        f"tcp://127.0.0.1:{port},unix://{sock}",
        "--listen-prometheus",
        f"127.0.0.1:{mport}",
    ) as proc:
        lines = lines_until(proc, "/metrics")
        assert lines == [
            f"datakit: listening on tcp://127.0.0.1:{port}",
            f"datakit: listening on unix://{sock}",
            f"datakit: metrics at http://127.0.0.1:{mport}/metrics",
        ]
        with Client.connect(f"unix://{sock}", timeout=10) as c:
            assert "branch" in c.ls()
        proc.send_signal(stop)
        assert proc.wait(30) in (0, 1)
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    assert not sock.exists()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    sock = tmp_path / "dk.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # left behind, as by a server that was killed
    stale.close()
    with server("--listen-9p", f"unix://{sock}") as proc:
        lines_until(proc, "listening on")
        with Client.connect(f"unix://{sock}", timeout=10) as c:
            assert "branch" in c.ls()


def test_a_socket_in_use_is_not_taken_over(tmp_path: Path) -> None:
    sock = tmp_path / "dk.sock"
    with server("--listen-9p", f"unix://{sock}") as first:
        lines_until(first, "listening on")
        second = subprocess.run(
            [sys.executable, "-m", "datakit", "serve", "--listen-9p", f"unix://{sock}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert len(second.stderr.strip().splitlines()) == 1
        assert "Address already in use" in second.stderr and str(sock) in second.stderr
        with Client.connect(f"unix://{sock}", timeout=10) as c:  # the first still serves
            assert "branch" in c.ls()
    assert sock.exists()  # a server that was killed cannot clean up


@pytest.mark.parametrize(
    "then", [["--listen-9p", "tcp://192.0.2.1:1"], ["--listen-prometheus", "192.0.2.1:9"]]
)
def test_a_failed_start_leaves_no_socket_file(tmp_path: Path, then: list[str]) -> None:
    """A later address that cannot be bound stops the start: the Unix socket
    bound just before goes too (192.0.2.1 is TEST-NET, never a local address)."""
    sock = tmp_path / "dk.sock"
    args = ["--listen-9p", f"unix://{sock}"]
    if then[0] == "--listen-9p":
        args = ["--listen-9p", f"unix://{sock},{then[1]}"]
    else:
        args += then
    result = subprocess.run(
        [sys.executable, "-m", "datakit", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "192.0.2.1" in result.stderr and "Traceback" not in result.stderr
    assert not sock.exists()


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("precious")
    result = subprocess.run(
        [sys.executable, "-m", "datakit", "serve", "--listen-9p", f"unix://{path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert path.read_text() == "precious"


def test_a_repository_with_a_work_tree_gets_one_warning(tmp_path: Path) -> None:
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    with server("--git", str(work), "--listen-9p", f"unix://{tmp_path / 'a.sock'}") as proc:
        lines = lines_until(proc, "listening on")
    warnings = [line for line in lines if "work tree" in line]
    assert len(warnings) == 1, lines
    assert "WARNING" in warnings[0] and "(main)" in warnings[0] and "git status" in warnings[0]
    with server("--git", str(bare), "--listen-9p", f"unix://{tmp_path / 'b.sock'}") as proc:
        lines = lines_until(proc, "listening on")
    assert lines == [f"datakit: listening on unix://{tmp_path / 'b.sock'}"]


def test_refs_that_are_no_regular_files_neither_hang_nor_exhaust_memory(tmp_path: Path) -> None:
    """A ref that is a FIFO (open blocks until a writer comes) or a symlink to
    /dev/zero (endless) is not a branch: the server starts, serves the good
    ones, and stops on SIGTERM. Run under a 2 GiB address-space limit."""
    import os
    import resource

    repo = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    heads = repo / "refs" / "heads"
    os.mkfifo(heads / "fifo")
    (heads / "zero").symlink_to("/dev/zero")

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    port = free_port()
    args = ["serve", "--git", str(repo), "--listen-9p", f"tcp://127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "datakit", *args],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_memory,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "never listened"
            try:
                c = Client.connect(f"tcp://127.0.0.1:{port}", timeout=10)
                break
            except OSError:
                time.sleep(0.1)
        with c:
            c.mkdir("branch/good")
            c.mkdir("branch/good/transactions/t")
            c.write("branch/good/transactions/t/ctl", b"commit", truncate=False)
            assert c.ls("branch") == ["good"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
