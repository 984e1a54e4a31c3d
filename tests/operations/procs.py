"""Start `datakit serve` as a real child process for operations tests."""

from __future__ import annotations

import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


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


_ANNOUNCED_9P = re.compile(rb"[Ll]istening on tcp://127\.0\.0\.1:(\d+)")
_ANNOUNCED_METRICS = re.compile(rb"[Mm]etrics at http://127\.0\.0\.1:(\d+)/metrics")
_ANNOUNCED_GIT = re.compile(rb"[Gg]it on git://127\.0\.0\.1:(\d+)/")


@contextmanager
def datakit_process(
    *args: str, nofile: tuple[int, int] | None = None, stderr: int | IO[bytes] = subprocess.PIPE
) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    """Yield (9p port, metrics port, process): see :func:`datakit_ports`."""
    with datakit_ports(*args, nofile=nofile, stderr=stderr) as (ports, proc):
        yield ports["9p"], ports["metrics"], proc


@contextmanager
def datakit_ports(
    *args: str, nofile: tuple[int, int] | None = None, stderr: int | IO[bytes] = subprocess.PIPE
) -> Iterator[tuple[dict[str, int], subprocess.Popen[bytes]]]:
    """Yield (ports by name, process) of a server started with `args`.

    The server picks its own ports (port 0) and the ports are read from what
    it announces on stderr: a port chosen here and bound there could be taken
    in between (a port the kernel hands out for an outgoing connection is
    the classic case): "9p", "metrics", and "git" with --listen-git
    tcp://127.0.0.1:0. `stderr`: a file that gets the server's stderr too.
    `nofile`: the RLIMIT_NOFILE (soft, hard) the server starts under."""

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
            "tcp://127.0.0.1:0",
            "--listen-prometheus",
            "127.0.0.1:0",
            *args,
        ],
        stderr=subprocess.PIPE,
        preexec_fn=limit_fds,
    )
    ports: dict[str, int] = {}
    wanted = 3 if any(a.startswith("--listen-git") for a in args) else 2
    announced = threading.Event()
    said = bytearray()  # the start of stderr, for the error if it never listens

    def read_stderr() -> None:
        # Always drained: a server blocked on a full stderr pipe would hang the test.
        assert proc.stderr is not None
        for line in proc.stderr:
            if not isinstance(stderr, int):
                stderr.write(line)
                stderr.flush()
            if len(said) < 65536:
                said.extend(line)
            for key, pattern in (
                ("9p", _ANNOUNCED_9P),
                ("metrics", _ANNOUNCED_METRICS),
                ("git", _ANNOUNCED_GIT),
            ):
                match = pattern.search(line)
                if match and key not in ports:
                    ports[key] = int(match.group(1))
            if len(ports) == wanted:
                announced.set()
        announced.set()  # the process is gone

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        if not announced.wait(30) or len(ports) < wanted:
            text = said.decode("utf-8", "replace")
            raise RuntimeError(f"datakit serve did not start (status {proc.poll()}): {text}")
        yield ports, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
        if proc.stderr:
            proc.stderr.close()
