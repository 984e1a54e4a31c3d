"""Database benchmarks: commits through 9p against git, big transactions, start-up, latency, memory.

Run: python bench/store_bench.py [--commits 300] [--big-files 10000] [--pack-gib 1.0]

Every row that has a reference (git) measures both in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datakit.client.ninep_client import Client


def wait_for(address: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Seconds until the server answers a 9p attach."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with Client.connect(address, timeout=5) as c:
                c.ls()
            return time.perf_counter() - start
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(address)


@contextmanager
def server(tmp: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    sock = tmp / f"dk-{time.monotonic_ns()}.sock"
    address = f"unix://{sock}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "datakit", "serve", "-q", "--listen-9p", address, *args]
    )
    try:
        started = wait_for(address, proc)
        yield address, proc, started
    finally:
        proc.terminate()
        proc.wait(10)


PROBE_INTERVAL = 0.01  # big_transaction: how often another client asks meanwhile
WARMUP = 50  # untimed commits first: lazy imports, caches, the 50-file tree filling up


def one_file_commits(address: str, n: int) -> float:
    """1-file transactions per second, like `echo x > rw/f; echo commit > ctl`."""
    with Client.connect(address, timeout=60) as c:
        c.mkdir("branch/master")
        for i in range(-WARMUP, n):
            if i == 0:
                start = time.perf_counter()
            t = f"branch/master/transactions/t{i}"
            c.mkdir(t)
            c.create(f"{t}/rw/file{i % 50}", f"content {i}\n".encode())
            c.write(f"{t}/ctl", b"commit")
        return n / (time.perf_counter() - start)


def git_commits(repo: Path, n: int) -> float:
    """git doing the same: write one file and commit it, in a loop."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for i in range(-WARMUP, n):
        if i == 0:
            start = time.perf_counter()
        (repo / f"file{i % 50}").write_text(f"content {i}\n")
        subprocess.run(["git", "-C", str(repo), "add", f"file{i % 50}"], check=True, env=env)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "x"], check=True, env=env)
    return n / (time.perf_counter() - start)


def big_transaction(address: str, files: int) -> tuple[float, float, float]:
    """Seconds for the whole transaction and for its commit alone, and the
    longest another connection waited for an answer while it committed."""
    with (
        Client.connect(address, timeout=600) as c,
        Client.connect(address, timeout=600) as other,
    ):
        c.mkdir("branch/big")
        t = "branch/big/transactions/t"
        c.mkdir(t)
        start = time.perf_counter()
        for d in range(files // 100):
            c.mkdir(f"{t}/rw/d{d}")
            for i in range(100):
                c.create(f"{t}/rw/d{d}/f{i}", f"{d}/{i}\n".encode())
        done = threading.Event()

        def commit() -> None:
            try:
                c.write(f"{t}/ctl", b"commit")
            finally:
                done.set()

        committing = time.perf_counter()
        committer = threading.Thread(target=commit)
        committer.start()
        worst = 0.0
        while not done.is_set():
            asked = time.perf_counter()
            other.ls("branch")
            worst = max(worst, time.perf_counter() - asked)
            time.sleep(PROBE_INTERVAL)
        committer.join()
        end = time.perf_counter()
        return end - start, end - committing, worst


def live_latency(address: str, rounds: int) -> float:
    """Median seconds from `echo commit > ctl` returning to a head.live reader seeing the head."""
    samples: list[float] = []
    with (
        Client.connect(address, timeout=60) as writer,
        Client.connect(address, timeout=60) as reader,
    ):
        writer.mkdir("branch/live")
        reader.mkdir("branch/live")  # branch directories are per connection until committed
        fid = reader.open("branch/live/head.live")
        offset = len(reader.read_fid(fid, 0, 4096))
        reader.read_fid(fid, offset, 4096)  # the empty reply after data
        for i in range(rounds):
            seen: list[float] = []

            def wait(off: int = offset, seen: list[float] = seen) -> None:
                reader.read_fid(fid, off, 4096)
                seen.append(time.perf_counter())

            waiter = threading.Thread(target=wait)
            waiter.start()
            time.sleep(0.02)  # let the read block first
            t = f"branch/live/transactions/t{i}"
            writer.mkdir(t)
            writer.create(f"{t}/rw/f", str(i).encode())
            committed = time.perf_counter()
            writer.write(f"{t}/ctl", b"commit")
            waiter.join(10)
            samples.append(seen[0] - committed)
            offset += 41
            reader.read_fid(fid, offset, 4096)  # flush rule: empty reply
        samples.sort()
        return samples[len(samples) // 2]


def make_big_pack(repo: Path, gib: float) -> int:
    """A bare repository whose single pack is about `gib` GiB of incompressible blobs.

    `git fast-import` writes the pack directly (a push would spend minutes
    searching for deltas between random blobs).
    """
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    chunk = 64 << 20
    n = max(1, int(gib * (1 << 30) / chunk))
    proc = subprocess.Popen(
        ["git", "-c", "fastimport.unpackLimit=1", "--git-dir", str(repo), "fast-import", "--quiet"],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    for i in range(n):
        proc.stdin.write(f"blob\nmark :{i + 1}\ndata {chunk}\n".encode())
        proc.stdin.write(os.urandom(chunk))
        proc.stdin.write(b"\n")
    proc.stdin.write(b"commit refs/heads/master\ncommitter b <b@x> 0 +0000\ndata 3\nbig\n")
    for i in range(n):
        proc.stdin.write(f"M 100644 :{i + 1} blob{i}\n".encode())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    return sum(p.stat().st_size for p in (repo / "objects" / "pack").glob("*.pack"))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_100k(tmp: Path, files: int) -> float:
    """Server RSS after listing every directory and reading a file of a `files`-file tree.

    The tree is built with `git fast-import` (building it through 9p would
    measure the commit path, not serving).
    """
    repo = tmp / "wide.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    lines = [
        "blob",
        "mark :1",
        "data 1",
        "x",
        "commit refs/heads/wide",
        "mark :2",
        "committer b <b@x> 0 +0000",
        "data 4",
        "wide",
    ]
    lines += [f"M 100644 :1 d{i // 1000}/f{i % 1000}" for i in range(files)]
    subprocess.run(
        ["git", "--git-dir", str(repo), "fast-import", "--quiet"],
        input=("\n".join(lines) + "\n").encode(),
        check=True,
    )
    with server(tmp, "--git", str(repo)) as (address, proc, _):
        with Client.connect(address, timeout=600) as c:
            c.mkdir("branch/wide")
            names = 0
            for d in range(files // 1000):
                names += len(c.ls(f"branch/wide/ro/d{d}"))
            assert names == files, names
            assert c.read("branch/wide/ro/d0/f0") == b"x"
        return rss_mib(proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--big-files", type=int, default=10000)
    parser.add_argument("--pack-gib", type=float, default=1.0)
    parser.add_argument("--wide-files", type=int, default=100000)
    parser.add_argument("--latency-rounds", type=int, default=30)
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        git_rate = git_commits(tmp / "gitloop", args.commits)
        with server(tmp) as (address, _, _):
            mem_rate = one_file_commits(address, args.commits)
        with server(tmp, "--git", str(tmp / "disk.git")) as (address, _, _):
            disk_rate = one_file_commits(address, args.commits)
        rows.append(
            (
                "1-file commits/s, 9p unix socket, memory store",
                f"{mem_rate:,.0f}",
                f"git {git_rate:,.0f}",
                f"{mem_rate / git_rate:.1f}x",
            )
        )
        rows.append(
            (
                "1-file commits/s, 9p unix socket, --git (fsynced)",
                f"{disk_rate:,.0f}",
                f"git {git_rate:,.0f}",
                f"{disk_rate / git_rate:.1f}x",
            )
        )
        with server(tmp, "--git", str(tmp / "big.git")) as (address, _, _):
            secs, commit_secs, stall = big_transaction(address, args.big_files)
        rows.append(
            (
                f"one transaction of {args.big_files:,} files, --git",
                f"{secs:.1f} s",
                f"{args.big_files / secs:,.0f} files/s",
                "",
            )
        )
        rows.append(
            (
                "  its commit; longest wait of another connection",
                f"{commit_secs:.2f} s",
                f"other waited {stall * 1000:.0f} ms",
                "",
            )
        )
        with server(tmp) as (address, _, _):
            lat = live_latency(address, args.latency_rounds)
        rows.append(
            ("head.live latency, commit to reader (median)", f"{lat * 1000:.1f} ms", "", "")
        )
        if args.pack_gib > 0:
            pack = make_big_pack(tmp / "huge.git", args.pack_gib)
            with server(tmp, "--git", str(tmp / "huge.git")) as (_, _, started):
                pass
            with server(tmp, "--git", str(tmp / "empty.git")) as (_, _, started_empty):
                pass
            rows.append(
                (
                    f"start to first reply, {pack / (1 << 30):.2f} GiB pack",
                    f"{started:.2f} s",
                    f"empty repo {started_empty:.2f} s",
                    "",
                )
            )
            shutil.rmtree(tmp / "huge.git")
        if args.wide_files > 0:
            serving = memory_100k(tmp, args.wide_files)
            name = f"server RSS serving a {args.wide_files:,}-file tree"
            rows.append((name, f"{serving:.0f} MiB", "", ""))
    print(f"{'benchmark':<52} {'datakit':>12} {'reference':>24} {'ratio':>7}")
    for name, ours, ref, ratio in rows:
        print(f"{name:<52} {ours:>12} {ref:>24} {ratio:>7}")


if __name__ == "__main__":
    main()
