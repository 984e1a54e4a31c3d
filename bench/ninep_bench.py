"""9p server benchmarks: pipelined round trips and diodcat throughput, ours against diod.

Run: python bench/ninep_bench.py [--size-mib 256] [--requests 20000] [--git] [--no-memory]

The memory rows read files committed to ``datakit serve``'s memory store
(``branch/master/ro/``); diod reads them from a directory.

``--git`` adds rows for a ``datakit serve --git`` store holding the same
blob, once as a loose object and once packed (``git repack -a -d``): warm
diodcat (best of N, after one untimed read), a cold diodcat (the first read
of a freshly started server, best of N fresh servers), and the cold
first-byte latency (walk + open + the first Tread of a fresh server, in ms;
lower is better, so its ratio is diod's time over ours).

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
def datakit_server(max_msize: int, git: str | None = None) -> Iterator[int]:
    """`datakit serve` on a memory store, or on the repository `git`."""
    port = free_port()
    store = ["--git", git] if git else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datakit",
            "serve",
            *store,
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


_RO = "branch/master/ro/"  # where the memory store's committed files are


def pipelined_round_trips(port: int, aname: str, n: int, path: str = "small") -> float:
    """Requests per second with all `n` small Treads in flight at once."""
    # No pipelined helpers: diod may run a walk and the open after it out of order.
    with Client.connect(
        f"tcp://127.0.0.1:{port}", version="9P2000.L", aname=aname, pipeline=False
    ) as c:
        fid = c.open(path)
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


def git_repo(path: str, payload: bytes, packed: bool) -> None:
    """A git repository whose master holds ``big`` (``payload``), loose or packed."""
    names = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")
    env = {**os.environ, **dict.fromkeys(names, "bench")}
    run = lambda *a: subprocess.run(["git", "-C", path, *a], check=True, env=env)  # noqa: E731
    os.makedirs(path)
    run("init", "-q", "-b", "master")
    with open(os.path.join(path, "big"), "wb") as f:
        f.write(payload)
    run("add", "big")
    run("commit", "-q", "-m", "big")
    os.unlink(os.path.join(path, "big"))
    if packed:
        run("repack", "-a", "-d", "-q")
        run("prune-packed")


def first_byte_ms(port: int, aname: str, path: str, msize: int) -> float:
    """Walk + open + the first Tread of ``path``, one request at a time (ms)."""
    with Client.connect(
        f"tcp://127.0.0.1:{port}", version="9P2000.L", aname=aname, msize=msize, pipeline=False
    ) as c:
        start = time.perf_counter()
        fid = c.open(path)
        data = c.read_fid(fid, 0, msize - 24)
        elapsed = time.perf_counter() - start
        assert data, "empty first read"
        c.clunk(fid)
    return elapsed * 1000


GIT_PATH = "branch/master/ro/big"


def git_rows(
    args: argparse.Namespace, payload: bytes, export: str, diod_port: int, workdir: str
) -> list[tuple[str, float, float]]:
    size = len(payload)
    rows: list[tuple[str, float, float]] = []
    best = lambda f: max(f() for _ in range(args.runs))  # noqa: E731
    least = lambda f: min(f() for _ in range(args.runs))  # noqa: E731
    diod = {
        m: best(lambda m=m: diodcat_mib_s(diod_port, export, "big", m, size)[0])
        for m in (64 * 1024, 1024 * 1024)
    }
    diod_first = least(lambda: first_byte_ms(diod_port, export, "big", 64 * 1024))
    for layout in ("loose", "packed"):
        repo = os.path.join(workdir, layout)
        git_repo(repo, payload, packed=layout == "packed")

        def cold(repo: str = repo) -> float:
            with datakit_server(1 << 20, repo) as port:
                return diodcat_mib_s(port, "/", GIT_PATH, 1 << 20, size)[0]

        def first(repo: str = repo) -> float:
            with datakit_server(1 << 20, repo) as port:
                return first_byte_ms(port, "/", GIT_PATH, 64 * 1024)

        ms = least(first)
        rows.append((f"--git {layout}: cold first byte, msize 64 KiB (ms)", ms, diod_first))
        rows.append(
            (f"--git {layout}: cold diodcat, msize 1024 KiB (MiB/s)", best(cold), diod[1 << 20])
        )
        with datakit_server(1 << 20, repo) as port:
            diodcat_mib_s(port, "/", GIT_PATH, 1 << 20, size)  # warm-up: inflates it
            for msize in (64 * 1024, 1024 * 1024):
                rows.append(
                    (
                        f"--git {layout}: diodcat, msize {msize // 1024} KiB (MiB/s)",
                        best(lambda m=msize: diodcat_mib_s(port, "/", GIT_PATH, m, size)[0]),
                        diod[msize],
                    )
                )
    return rows


def print_rows(rows: list[tuple[str, float, float]]) -> None:
    print(f"{'benchmark':<60} {'datakit':>12} {'diod':>12} {'ratio':>7}")
    for name, ours_v, diod_v in rows:
        # ratio > 1: datakit better (for a time, in ms, that is diod's over ours)
        ratio = diod_v / ours_v if name.endswith("(ms)") else ours_v / diod_v
        print(f"{name:<60} {ours_v:>12,.1f} {diod_v:>12,.1f} {ratio:>7.2f}")
    print("(diod negotiates msize down to at most 64 KiB, so its 1 MiB row runs at 64 KiB;")
    print(" its page cache is warm: the cold rows compare our first read with diod's any read)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3, help="best of N for each measurement")
    parser.add_argument("--git", action="store_true", help="add the --git store rows")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory store rows")
    args = parser.parse_args()
    if not shutil.which("diod"):
        sys.exit("diod is needed: apt-get install diod")
    payload = os.urandom(1 << 20) * args.size_mib
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as export:
        with open(os.path.join(export, "big"), "wb") as f:
            f.write(payload)
        with open(os.path.join(export, "small"), "wb") as f:
            f.write(b"x" * 64)
        with diod_server(export) as theirs:
            if not args.no_memory:
                rows.extend(memory_rows(args, payload, export, theirs))
            if args.git:
                with tempfile.TemporaryDirectory() as workdir:
                    rows.extend(git_rows(args, payload, export, theirs, workdir))
    print_rows(rows)


def memory_rows(
    args: argparse.Namespace, payload: bytes, export: str, theirs: int
) -> list[tuple[str, float, float]]:
    size = len(payload)
    rows: list[tuple[str, float, float]] = []
    with datakit_server(1 << 20) as ours:
        with Client.connect(f"tcp://127.0.0.1:{ours}", msize=1 << 20) as c:
            # Committed, so both are read from the memory store's objects.
            c.mkdir("branch/master")
            c.mkdir("branch/master/transactions/t")
            c.create("branch/master/transactions/t/rw/big", payload)
            c.create("branch/master/transactions/t/rw/small", b"x" * 64)
            c.write("branch/master/transactions/t/ctl", b"commit")
        best = lambda f: max(f() for _ in range(args.runs))  # noqa: E731
        rows.append(
            (
                f"pipelined round trips/s ({args.requests} Tread)",
                best(lambda: pipelined_round_trips(ours, "", args.requests, _RO + "small")),
                best(lambda: pipelined_round_trips(theirs, export, args.requests)),
            )
        )
        for msize in (64 * 1024, 1024 * 1024):
            rows.append(
                (
                    f"memory: diodcat {args.size_mib} MiB, msize {msize // 1024} KiB (MiB/s)",
                    best(lambda m=msize: diodcat_mib_s(ours, "/", _RO + "big", m, size)[0]),
                    best(lambda m=msize: diodcat_mib_s(theirs, export, "big", m, size)[0]),
                )
            )
    return rows


if __name__ == "__main__":
    main()
