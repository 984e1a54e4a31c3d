"""9p server benchmarks: pipelined round trips and diodcat throughput, ours against diod.

Run: python bench/ninep_bench.py [--size-mib 256] [--requests 20000]

Both servers run on this machine in the same run, so the ratios are
comparable even though the absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from datakit import ninep
from datakit.client.ninep_client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@contextmanager
def datakit_server(max_msize: int) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datakit",
            "serve",
            "--example-tree",
            "-q",
            "--max-msize",
            str(max_msize),
            "--listen-9p",
            f"tcp://127.0.0.1:{port}",
        ]
    )
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def diod_server(export: str) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        ["diod", "-f", "-n", "-l", f"127.0.0.1:{port}", "-e", export, "-L", "stderr"],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def pipelined_round_trips(port: int, aname: str, n: int) -> float:
    """Requests per second with all `n` small Treads in flight at once."""
    # No pipelined helpers: diod may run a walk and the open after it out of order.
    with Client.connect(
        f"tcp://127.0.0.1:{port}", version="9P2000.L", aname=aname, pipeline=False
    ) as c:
        fid = c.open("small")
        frames = b"".join(
            ninep.encode(ninep.Tread(tag=i % 60000, fid=fid, offset=0, count=64), c.dialect)
            for i in range(n)
        )
        start = time.perf_counter()
        sender = threading.Thread(target=c.sock.sendall, args=(frames,))
        sender.start()
        for _ in range(n):
            reply = c.receive()
            assert isinstance(reply, ninep.Rread), reply
        elapsed = time.perf_counter() - start
        sender.join()
        return n / elapsed


def diodcat_mib_s(port: int, aname: str, path: str, msize: int, size: int) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        ["diodcat", "-s", f"127.0.0.1:{port}", "-a", aname, "-m", str(msize), path],
        stdout=subprocess.PIPE,
        check=True,
    )
    elapsed = time.perf_counter() - start
    assert len(proc.stdout) == size, (len(proc.stdout), size)
    return size / elapsed / (1 << 20), len(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3, help="best of N for each measurement")
    args = parser.parse_args()
    if not shutil.which("diod"):
        sys.exit("diod is needed: apt-get install diod")
    size = args.size_mib << 20
    payload = os.urandom(1 << 20) * args.size_mib
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as export:
        with open(os.path.join(export, "big"), "wb") as f:
            f.write(payload)
        with open(os.path.join(export, "small"), "wb") as f:
            f.write(b"x" * 64)
        with datakit_server(1 << 20) as ours, diod_server(export) as theirs:
            with Client.connect(f"tcp://127.0.0.1:{ours}", msize=1 << 20) as c:
                c.create("big", payload)
                c.create("small", b"x" * 64)
            best = lambda f: max(f() for _ in range(args.runs))  # noqa: E731
            rows.append(
                (
                    f"pipelined round trips/s ({args.requests} Tread)",
                    best(lambda: pipelined_round_trips(ours, "", args.requests)),
                    best(lambda: pipelined_round_trips(theirs, export, args.requests)),
                )
            )
            for msize in (64 * 1024, 1024 * 1024):
                rows.append(
                    (
                        f"diodcat {args.size_mib} MiB, msize {msize // 1024} KiB (MiB/s)",
                        best(lambda m=msize: diodcat_mib_s(ours, "/", "big", m, size)[0]),
                        best(lambda m=msize: diodcat_mib_s(theirs, export, "big", m, size)[0]),
                    )
                )
    print(f"{'benchmark':<52} {'datakit':>12} {'diod':>12} {'ratio':>7}")
    for name, ours_v, diod_v in rows:
        print(f"{name:<52} {ours_v:>12,.1f} {diod_v:>12,.1f} {ours_v / diod_v:>7.2f}")
    print("(diod negotiates msize down to at most 64 KiB, so its 1 MiB row runs at 64 KiB)")


if __name__ == "__main__":
    main()
