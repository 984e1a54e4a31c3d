"""Start `datakit serve` as a real child process for operations tests."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

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
def datakit_process(
    *args: str, nofile: tuple[int, int] | None = None, stderr: int | IO[bytes] = subprocess.PIPE
) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    """Yield (9p port, metrics port, process) of a server started with `args`.

    `nofile`: the RLIMIT_NOFILE (soft, hard) the server starts under."""
    port, mport = free_port(), free_port()

    def limit_fds() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

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
        stderr=stderr,
        preexec_fn=limit_fds,
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
