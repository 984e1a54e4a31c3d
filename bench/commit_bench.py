"""One-file commits per second: raw 9p, the client library, and a git loop.

Run: python bench/commit_bench.py [--commits 300] [--rounds 3] [--warmup 50]
                                  [--checkout NAME=PATH ...]

Every contender commits one small file per transaction, one at a time, and
all of them run in the same invocation, rounds interleaved (each keeps its
best round), so the ratios hold even though absolute numbers depend on how
busy the machine is:

* **raw 9p**: an independent 9P2000.L client written here (its own struct
  encoding of the eleven messages it needs, nothing imported from datakit)
  over TCP, one request in flight at a time, the way the kernel's client
  sends them. Per commit: walk to ``branch/master/transactions``, mkdir the
  transaction, walk to its ``rw``, lcreate the file, write, clunk, walk to
  ``ctl``, lopen, write ``commit``, clunk, clunk the transactions fid:
  eleven round trips. Against ``datakit serve`` with a memory store and with
  ``--git REPO`` (durable: every acknowledged commit is fsynced).
* **raw 9p, 11 empty round trips** (memory server only): the same client
  sending eleven requests that commit nothing (walk the root to a fid, clunk
  it) per "commit": the request path's own cost, the floor under the rows
  above whatever the store does.
* **client library**: ``datakit.client.connect("tcp://...")``, one
  ``transaction()`` / ``create_file`` / ``commit`` per commit, run in a child
  process with the checkout's code (so ``--checkout`` compares client
  libraries too). Its requests per commit come from the server's metrics.
* **git**: ``git add`` + ``git commit`` in a loop on a work tree (the
  reference every ratio is taken against).

``--checkout NAME=PATH`` (repeatable) runs the datakit contenders for each
checkout in the same run, e.g. ``--checkout before=/tmp/main
--checkout after=.``: before/after numbers from the same hour. Default: the
checkout this script lives in.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOFID = 0xFFFFFFFF
TAG = 1

# 9P2000.L message types (T; the reply is T + 1, an error is Rlerror).
RLERROR = 7
TLOPEN = 12
TLCREATE = 14
TMKDIR = 72
TVERSION = 100
TATTACH = 104
TWALK = 110
TREAD = 116
TWRITE = 118
TCLUNK = 120

O_WRONLY = 0o1
O_CREAT = 0o100
O_TRUNC = 0o1000


class NinepError(OSError):
    pass


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<H", len(raw)) + raw


class Raw9p:
    """A minimal blocking 9P2000.L client: one request in flight, one tag."""

    def __init__(self, port: int, msize: int = 65536) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.round_trips = 0
        self.spare_open = False  # fid 9, see empty_trips
        _, body = self.rpc(TVERSION, struct.pack("<I", msize) + _s("9P2000.L"), tag=0xFFFF)
        (self.msize,) = struct.unpack_from("<I", body)
        version = body[6 : 6 + struct.unpack_from("<H", body, 4)[0]]
        if version != b"9P2000.L":
            raise NinepError(f"server speaks {version!r}")
        attach = struct.pack("<II", 0, NOFID) + _s("bench") + _s("") + struct.pack("<I", 0)
        self.rpc(TATTACH, attach)

    def close(self) -> None:
        self.sock.close()

    def _recv_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise NinepError("server closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def rpc(self, kind: int, body: bytes, tag: int = TAG) -> tuple[int, bytes]:
        self.sock.sendall(struct.pack("<IBH", 7 + len(body), kind, tag) + body)
        self.round_trips += 1
        size, rkind, rtag = struct.unpack("<IBH", self._recv_exact(7))
        reply = self._recv_exact(size - 7)
        if rtag != tag:
            raise NinepError(f"reply tag {rtag}, sent {tag}")
        if rkind == RLERROR:
            (errno,) = struct.unpack("<I", reply)
            raise NinepError(errno, f"{os.strerror(errno)} (message type {kind})")
        if rkind != kind + 1:
            raise NinepError(f"reply type {rkind} to {kind}")
        return rkind, reply

    # -- the messages ---------------------------------------------------------

    def walk(self, fid: int, newfid: int, names: list[str]) -> None:
        body = struct.pack("<IIH", fid, newfid, len(names)) + b"".join(map(_s, names))
        _, reply = self.rpc(TWALK, body)
        (nwqid,) = struct.unpack_from("<H", reply)
        if nwqid != len(names):
            raise NinepError(f"walk to {'/'.join(names)} stopped after {nwqid}")

    def mkdir(self, dfid: int, name: str) -> None:
        self.rpc(TMKDIR, struct.pack("<I", dfid) + _s(name) + struct.pack("<II", 0o755, 0))

    def lcreate(self, fid: int, name: str) -> None:
        flags = O_WRONLY | O_CREAT | O_TRUNC
        self.rpc(TLCREATE, struct.pack("<I", fid) + _s(name) + struct.pack("<III", flags, 0o644, 0))

    def lopen(self, fid: int, flags: int) -> None:
        self.rpc(TLOPEN, struct.pack("<II", fid, flags))

    def write(self, fid: int, data: bytes) -> None:
        _, reply = self.rpc(TWRITE, struct.pack("<IQI", fid, 0, len(data)) + data)
        (count,) = struct.unpack("<I", reply)
        if count != len(data):
            raise NinepError(f"short write: {count} of {len(data)}")

    def read(self, fid: int, count: int) -> bytes:
        _, reply = self.rpc(TREAD, struct.pack("<IQI", fid, 0, count))
        (n,) = struct.unpack_from("<I", reply)
        return reply[4 : 4 + n]

    def clunk(self, fid: int) -> None:
        self.rpc(TCLUNK, struct.pack("<I", fid))

    # -- what the benchmark does ----------------------------------------------

    def make_branch(self, name: str) -> None:
        self.walk(0, 1, ["branch"])
        try:
            self.mkdir(1, name)
        except NinepError as e:
            if e.errno != 17:  # EEXIST
                raise
        finally:
            self.clunk(1)

    def commit_one(self, tx: str, name: str, data: bytes) -> None:
        """One transaction writing one file: eleven round trips."""
        self.walk(0, 1, ["branch", "master", "transactions"])
        self.mkdir(1, tx)
        self.walk(1, 2, [tx, "rw"])
        self.lcreate(2, name)
        self.write(2, data)
        self.clunk(2)
        self.walk(1, 3, [tx, "ctl"])
        self.lopen(3, O_WRONLY)
        self.write(3, b"commit")
        self.clunk(3)
        self.clunk(1)

    def empty_trips(self, n: int) -> None:
        """``n`` round trips that touch no transaction: walk the root to a
        new fid and clunk it, alternately (the server's cost per request)."""
        for _ in range(n):
            if self.spare_open:
                self.clunk(9)
            else:
                self.walk(0, 9, [])
            self.spare_open = not self.spare_open

    def head(self) -> str:
        self.walk(0, 1, ["branch", "master", "head"])
        try:
            self.lopen(1, 0)
            return self.read(1, 100).decode().strip()
        finally:
            self.clunk(1)


# -- servers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    port: int
    metrics_port: int
    proc: subprocess.Popen[bytes]

    def requests(self) -> int:
        """9p requests served so far (all types), from the Prometheus page."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            text = page.read().decode()
        pattern = r"^datakit_9p_requests_total\{[^}]*\} ([0-9.e+]+)$"
        return int(sum(float(v) for v in re.findall(pattern, text, re.MULTILINE)))


def checkout_env(checkout: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(checkout)}


@contextmanager
def server(checkout: Path, git: Path | None) -> Iterator[Server]:
    port, metrics_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "datakit", "serve", "-q",
           "--listen-9p", f"tcp://127.0.0.1:{port}",
           "--listen-prometheus", f"127.0.0.1:{metrics_port}"]  # fmt: skip
    if git is not None:
        cmd += ["--git", str(git)]
    proc = subprocess.Popen(cmd, cwd=checkout, env=checkout_env(checkout))
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                Raw9p(port).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.05)
        yield Server(port, metrics_port, proc)
    finally:
        proc.terminate()
        proc.wait(10)


# -- contenders --------------------------------------------------------------------

Contender = Callable[[int], float]
"""Makes n commits (after its warm-up, untimed) and returns the elapsed seconds."""


def raw_contender(srv: Server, warmup: int) -> tuple[Contender, Callable[[], int]]:
    client = Raw9p(srv.port)
    client.make_branch("master")
    counter = iter(range(10**9))

    def commits(n: int) -> None:
        for _ in range(n):
            i = next(counter)
            client.commit_one(f"t{i}", f"file{i % 50}", b"content %d\n" % i)

    commits(warmup)
    before = client.round_trips

    def run(n: int) -> float:
        start = time.perf_counter()
        commits(n)
        return time.perf_counter() - start

    def trips() -> int:
        return client.round_trips - before

    return run, trips


def floor_contender(srv: Server, warmup: int) -> Contender:
    """Eleven round trips that commit nothing, as many times as commits:
    what the request path alone costs (the rest of a commit is the tree,
    objects and ref work behind it)."""
    client = Raw9p(srv.port)
    client.empty_trips(11 * warmup)

    def run(n: int) -> float:
        start = time.perf_counter()
        client.empty_trips(11 * n)
        return time.perf_counter() - start

    return run


CLIENT_SCRIPT = """
import sys, time
from datakit.client import connect
address, first, warmup, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with connect(address) as conn:
    master = conn.branch("master")
    def commits(lo, hi):
        for i in range(lo, hi):
            with master.transaction() as t:
                t.create_file(f"file{i % 50}", b"content %d\\n" % i)
                t.commit(f"commit {i}")
    commits(first, first + warmup)
    start = time.perf_counter()
    commits(first + warmup, first + warmup + n)
    print(time.perf_counter() - start)
"""


def client_contender(srv: Server, checkout: Path, warmup: int) -> tuple[Contender, list[float]]:
    """A child process per round (the checkout's client library); the
    requests it sent per timed commit are recorded in the returned list."""
    counter = [10**8]
    per_commit: list[float] = []

    def run(n: int) -> float:
        first = counter[0]
        counter[0] += warmup + n
        before = srv.requests()
        out = subprocess.run(
            [sys.executable, "-c", CLIENT_SCRIPT, f"tcp://127.0.0.1:{srv.port}",
             str(first), str(warmup), str(n)],
            env=checkout_env(checkout), check=True, capture_output=True, text=True,
        )  # fmt: skip
        per_commit.append((srv.requests() - before) / (warmup + n))
        return float(out.stdout.split()[-1])

    return run, per_commit


def git_contender(repo: Path, warmup: int) -> Contender:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}  # fmt: skip
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    counter = iter(range(10**9))

    def commits(n: int) -> None:
        for _ in range(n):
            i = next(counter)
            name = f"file{i % 50}"
            (repo / name).write_text(f"content {i}\n")
            subprocess.run(["git", "-C", str(repo), "add", name], check=True, env=env)
            subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "x"], check=True, env=env)

    commits(warmup)

    def run(n: int) -> float:
        start = time.perf_counter()
        commits(n)
        return time.perf_counter() - start

    return run


def git_commit_count(repo: Path) -> int:
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-list", "--count", "master"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(out.stdout)


# -- main ----------------------------------------------------------------------------


def parse_checkout(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not (Path(path) / "datakit" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME=PATH of a datakit checkout")
    return name, Path(path).resolve()


def trips_note(trips: Callable[[], int], commits: int) -> str:
    return f"{trips() / commits:.0f} round trips"


def requests_note(per_commit: list[float]) -> str:
    return f"{min(per_commit):.1f} requests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=300, help="timed commits per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=50, help="untimed commits first")
    parser.add_argument("--checkout", type=parse_checkout, action="append", default=[])
    parser.add_argument("--no-git-loop", action="store_true", help="skip the git reference")
    parser.add_argument(
        "--only", default="", help="comma-separated contender kinds: raw,floor,client"
    )
    args = parser.parse_args()
    if args.commits < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--commits and --rounds must be positive, --warmup not negative")
    checkouts: list[tuple[str, Path]] = args.checkout or [("", ROOT)]
    kinds = set(args.only.split(",")) if args.only else {"raw", "floor", "client"}
    n = args.commits

    with tempfile.TemporaryDirectory(prefix="dk-commit-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        contenders: dict[str, Contender] = {}
        notes: dict[str, Callable[[], str]] = {}
        repos: dict[str, tuple[Path, int]] = {}
        for label, checkout in checkouts:
            prefix = f"{label}: " if label else ""
            for store in ("memory", "--git"):
                git = work / f"{label or 'dk'}-{store.strip('-')}.git" if store == "--git" else None
                srv = stack.enter_context(server(checkout, git))
                if "raw" in kinds:
                    name = f"{prefix}raw 9p, {store}"
                    run, trips = raw_contender(srv, args.warmup)
                    contenders[name] = run
                    notes[name] = functools.partial(trips_note, trips, n * args.rounds)
                if "floor" in kinds and git is None:
                    name = f"{prefix}raw 9p, 11 empty round trips"
                    contenders[name] = floor_contender(srv, args.warmup)
                if "client" in kinds:
                    name = f"{prefix}client library, {store}"
                    crun, per_commit = client_contender(srv, checkout, args.warmup)
                    contenders[name] = crun
                    notes[name] = functools.partial(requests_note, per_commit)
                if git is not None:
                    expected = ("raw" in kinds) * (args.warmup + n * args.rounds) + (
                        "client" in kinds
                    ) * args.rounds * (args.warmup + n)
                    repos[prefix] = (git, expected)
        reference = "git add + git commit"
        if not args.no_git_loop:
            contenders[reference] = git_contender(work / "worktree", args.warmup)

        best = dict.fromkeys(contenders, 0.0)
        for _ in range(args.rounds):
            for name, contender in contenders.items():
                best[name] = max(best[name], n / contender(n))

        for prefix, (repo, expected) in repos.items():
            count = git_commit_count(repo)
            if count != expected:
                raise SystemExit(f"{prefix}--git repository holds {count} commits, not {expected}")

    print(f"one-file commits, {n} per round, best of {args.rounds} (warm-up {args.warmup} untimed)")
    ref = best.get(reference)
    head = f"  {'contender':<36} {'commits/s':>10} {'ms/commit':>10} {'vs git':>8}  per commit"
    print(head)
    for name, rate in best.items():
        ratio = f"{rate / ref:>7.2f}x" if ref else f"{'-':>8}"
        note = notes[name]() if name in notes else ""
        print(f"  {name:<36} {rate:>10,.0f} {1000 / rate:>10.2f} {ratio}  {note}")


if __name__ == "__main__":
    main()
