"""Start `datakit serve` as a real child process for operations tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.ports import free_port


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@contextmanager
def datakit_process(*args: str) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    """Yield (9p port, metrics port, process) of a server started with `args`."""
    port, mport = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datakit",
            "serve",
            "--listen-9p",
            f"tcp://127.0.0.1:{port}",
            "--listen-prometheus",
            f"127.0.0.1:{mport}",
            *args,
        ],
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        wait_for_port(mport, proc)
        yield port, mport, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
