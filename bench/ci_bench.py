"""DataKitCI end to end: how long from `git commit` to the job starting and
to its final status, and how many targets and jobs one CI process handles.

    python bench/ci_bench.py [--commits 10] [--branches 50] [--jobs-per-target 3]

Starts real processes: `datakit serve` (memory store), the local bridge on a
repository made with git, and `datakit ci`. Latency: each job writes the
moment it starts into a file; the final status is seen with a watch on
github-metadata. Load: N branches at N different commits, each with J jobs
running `true`; the wall time until every status is final, and the CPU
seconds the CI process used (its own, and its jobs').
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from datakit.client import AGAIN, connect

ANNOUNCED = re.compile(rb"(listening on tcp|web UI at http)://127\.0\.0\.1:(\d+)", re.IGNORECASE)


def start(args: list[str], what: bytes | None) -> tuple[subprocess.Popen[bytes], int | None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "datakit", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    port: list[int] = []
    seen = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            m = ANNOUNCED.search(line)
            if m and what is not None and what in m.group(1).lower() and not port:
                port.append(int(m.group(2)))
                seen.set()
        seen.set()

    threading.Thread(target=drain, daemon=True).start()
    if what is not None and (not seen.wait(30) or not port):
        proc.kill()
        raise RuntimeError(f"datakit {args[0]} did not start")
    return proc, port[0] if port else None


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}  # fmt: skip
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def status_path(sha: str, job: str) -> str:
    return f"me/p/commit/{sha}/status/ci/datakit/{job}/state"


Key = tuple[str, str]


def wait_final(db: str, wanted: set[Key], timeout: float) -> dict[Key, float]:
    """Wait until every (sha, job) has a final status; when each was first seen."""
    seen: dict[Key, float] = {}
    with connect(db) as conn:
        branch = conn.branch("github-metadata")

        def check(head: object) -> object:
            if head is None:
                return AGAIN
            tree = branch.head().tree()  # type: ignore[union-attr]
            now = time.monotonic()
            for sha, job in wanted - seen.keys():
                path = status_path(sha, job)
                if tree.exists_file(path) and tree.read_file(path).strip() in (
                    b"success",
                    b"failure",
                ):
                    seen[(sha, job)] = now
            return True if len(seen) == len(wanted) else AGAIN

        branch.wait_for_head(check, timeout=timeout)
    return seen


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, children's) CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime) / tick, (cutime + cstime) / tick


def latency(tmp: Path, commits: int) -> None:
    repo = tmp / "lat"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "master")
    git(repo, "commit", "-q", "--allow-empty", "-m", "m0")
    marks = tmp / "marks"
    marks.mkdir()
    config = tmp / "lat.toml"
    config.write_text(
        f'[[project]]\nrepo = "me/p"\nsource = "{repo}"\n\n'
        f'[[project.job]]\nname = "ok"\nrun = "date +%s.%N > {marks}/$DATAKIT_CI_COMMIT"\n'
    )
    server, port = start(["serve", "--listen-9p", "tcp://127.0.0.1:0"], b"listening on tcp")
    db = f"tcp://127.0.0.1:{port}"
    bridge, _ = start(["bridge", "local", "--metadata-store", db, f"me/p:{repo}"], None)
    ci, _ = start(
        ["ci", "--config", str(config), "--metadata-store", db, "--listen", "127.0.0.1:0",
         "--workdir", str(tmp / "work-lat")],
        b"web ui at http",
    )  # fmt: skip
    try:
        first = git(repo, "rev-parse", "HEAD")
        wait_final(db, {(first, "ok")}, 60)  # warm: mirror made, everything connected
        to_start, to_final = [], []
        for i in range(commits):
            git(repo, "commit", "-q", "--allow-empty", "-m", f"m{i + 1}")
            t0_wall, t0 = time.time(), time.monotonic()
            sha = git(repo, "rev-parse", "HEAD")
            done = wait_final(db, {(sha, "ok")}, 60)
            started = float((marks / sha).read_text())
            to_start.append(started - t0_wall)
            to_final.append(done[(sha, "ok")] - t0)
        print(f"commit -> job started:  median {statistics.median(to_start) * 1000:7.0f} ms  "
              f"max {max(to_start) * 1000:7.0f} ms  ({commits} commits)")  # fmt: skip
        print(f"commit -> final status: median {statistics.median(to_final) * 1000:7.0f} ms  "
              f"max {max(to_final) * 1000:7.0f} ms")  # fmt: skip
    finally:
        for p in (ci, bridge, server):
            p.terminate()
            p.wait(20)


def load(tmp: Path, branches: int, jobs: int, pool: int) -> None:
    repo = tmp / "load"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "master")
    git(repo, "commit", "-q", "--allow-empty", "-m", "base")
    for i in range(branches):
        git(repo, "checkout", "-q", "-b", f"b{i}", "master")
        git(repo, "commit", "-q", "--allow-empty", "-m", f"b{i}")
    git(repo, "checkout", "-q", "master")
    shas = {git(repo, "rev-parse", f"b{i}") for i in range(branches)}
    shas.add(git(repo, "rev-parse", "master"))
    config = tmp / "load.toml"
    config.write_text(
        f'[[project]]\nrepo = "me/p"\nsource = "{repo}"\n\n'
        + "".join(f'[[project.job]]\nname = "j{j}"\nrun = ["true"]\n\n' for j in range(jobs))
    )
    server, port = start(["serve", "--listen-9p", "tcp://127.0.0.1:0"], b"listening on tcp")
    db = f"tcp://127.0.0.1:{port}"
    bridge, _ = start(["bridge", "local", "--metadata-store", db, f"me/p:{repo}"], None)
    t0 = time.monotonic()
    ci, _ = start(
        ["ci", "--config", str(config), "--metadata-store", db, "--listen", "127.0.0.1:0",
         "--workdir", str(tmp / "work-load"), "--jobs", str(pool)],
        b"web ui at http",
    )  # fmt: skip
    try:
        wanted = {(sha, f"j{j}") for sha in shas for j in range(jobs)}
        seen = wait_final(db, wanted, 1800)
        wall = max(seen.values()) - t0
        own, children = cpu_seconds(ci.pid)
        print(f"{len(shas)} targets x {jobs} jobs = {len(wanted)} runs of `true`, "
              f"--jobs {pool}: {wall:.1f} s wall, {len(wanted) / wall:.1f} runs/s; "
              f"CI process CPU {own:.1f} s (its jobs and git {children:.1f} s)")  # fmt: skip
    finally:
        for p in (ci, bridge, server):
            p.terminate()
            p.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--branches", type=int, default=50)
    parser.add_argument("--jobs-per-target", type=int, default=3)
    parser.add_argument("--pool", type=int, default=2, help="the CI's --jobs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        latency(Path(d), args.commits)
        load(Path(d), args.branches, args.jobs_per_target, args.pool)


if __name__ == "__main__":
    main()
