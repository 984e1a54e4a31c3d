"""Client library benchmarks: each backend against dulwich used directly.

Run: python bench/client_bench.py [--transactions 100] [--files 10000] [--rounds 3]

Two measurements, every contender in the same run so the ratios are
comparable even though absolute numbers depend on the machine. Rounds
interleave the contenders and each keeps its best round, so a burst of load
from elsewhere on the machine does not land on one contender only.

* 1-file transactions per second: open a transaction, write one file,
  commit. Through the 9p backend to a ``datakit serve`` process on a Unix
  socket (in-memory store, and ``--git`` on disk), through the Git backend
  on a temporary repository, and with raw dulwich building the same commits
  (blob, tree, commit, compare-and-swap of the ref). Disk contenders are
  all durable: objects and refs are fsynced (dulwich with
  ``core.fsyncObjectFiles``).
* Reading every file of a 10,000-file snapshot (one pack, 100 directories
  of 100 small files) on a fresh connection each round: the 9p backend to a
  ``--git`` server on that repository (whose caches stay warm between
  rounds, as a long-running server's would), the Git backend on it, and raw
  dulwich looking up each path from the commit's tree.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from dulwich.object_store import tree_lookup_path
from dulwich.objects import Blob, Commit, ShaFile, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from datakit.client import Connection, connect

ROOT = Path(__file__).resolve().parents[1]
AUTHOR = b"datakit <datakit@mobyproject.org>"


@contextmanager
def server(workdir: Path, name: str, git: Path | None = None) -> Iterator[str]:
    """A ``datakit serve`` process on a Unix socket (its own process, so the
    client and the server do not share a GIL)."""
    sock = workdir / f"{name}.sock"
    address = f"unix://{sock}"
    cmd = [sys.executable, "-m", "datakit", "serve", "-q", "--listen-9p", address]
    if git is not None:
        cmd += ["--git", str(git)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(sock))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.05)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- transactions ---------------------------------------------------------------

Contender = Callable[[], float]
"""Runs one round of a measurement and returns the elapsed seconds."""


def client_transactions(conn: Connection, n: int) -> Contender:
    master = conn.branch("master")
    counter = iter(range(10**9))

    def one_round() -> float:
        def run() -> None:
            for _ in range(n):
                i = next(counter)
                with master.transaction() as t:
                    t.create_file("file", b"value %d" % i)
                    t.commit(f"commit {i}")

        return timed(run)

    return one_round


def dulwich_transactions(path: Path, n: int) -> Contender:
    """The same commits with dulwich's object store and refs (durable like
    ours: ``core.fsyncObjectFiles``; dulwich fsyncs refs by default)."""
    repo = Repo.init_bare(str(path), mkdir=True)
    config = repo.get_config()
    config.set(b"core", b"fsyncObjectFiles", True)
    config.write_to_path()
    repo.close()
    repo = Repo(str(path))
    ref = Ref(b"refs/heads/master")
    counter = iter(range(10**9))

    def run() -> None:
        for _ in range(n):
            i = next(counter)
            blob = Blob.from_string(b"value %d" % i)
            tree = Tree()
            tree.add(b"file", 0o100644, blob.id)
            try:
                old = repo.refs[ref]
            except KeyError:
                old = None
            commit = Commit()
            commit.tree = tree.id
            commit.parents = [old] if old else []
            commit.author = commit.committer = AUTHOR
            commit.commit_time = commit.author_time = int(time.time())
            commit.commit_timezone = commit.author_timezone = 0
            commit.message = b"commit %d" % i
            for obj in (blob, tree, commit):
                repo.object_store.add_object(obj)
            if not repo.refs.set_if_equals(ref, old, commit.id):
                raise RuntimeError("ref moved")

    return lambda: timed(run)


# -- snapshot reads -----------------------------------------------------------------


def snapshot_paths(files: int) -> list[str]:
    per_dir = 100
    return [f"d{i // per_dir:03d}/f{i % per_dir:03d}" for i in range(files)]


def build_snapshot(path: Path, paths: list[str]) -> str:
    """The snapshot, written with dulwich in one pack (as a long-lived,
    packed repository would hold it). Returns the commit id."""
    repo = Repo.init_bare(str(path), mkdir=True)
    objects: list[ShaFile] = []
    dirs: dict[str, Tree] = {}
    for p in paths:
        d, _, name = p.rpartition("/")
        blob = Blob.from_string(f"content of {p}\n".encode())
        objects.append(blob)
        dirs.setdefault(d, Tree()).add(name.encode(), 0o100644, blob.id)
    root = Tree()
    for d, tree in dirs.items():
        objects.append(tree)
        root.add(d.encode(), 0o040000, tree.id)
    objects.append(root)
    commit = Commit()
    commit.tree = root.id
    commit.author = commit.committer = AUTHOR
    commit.commit_time = commit.author_time = 0
    commit.commit_timezone = commit.author_timezone = 0
    commit.message = b"snapshot"
    objects.append(commit)
    repo.object_store.add_objects([(o, None) for o in objects])
    repo.refs[Ref(b"refs/heads/master")] = commit.id
    repo.close()
    return commit.id.decode()


def client_reads(
    open_conn: Callable[[], Connection], commit_id: str, paths: list[str]
) -> Contender:
    expected = sum(len(f"content of {p}\n") for p in paths)

    def one_round() -> float:
        with open_conn() as conn:  # fresh connection: nothing memoised client-side
            tree = conn.commit(commit_id).tree()
            total = 0

            def run() -> None:
                nonlocal total
                for p in paths:
                    total += len(tree.read_file(p))

            elapsed = timed(run)
        assert total == expected
        return elapsed

    return one_round


def dulwich_reads(path: Path, commit_id: str, paths: list[str]) -> Contender:
    expected = sum(len(f"content of {p}\n") for p in paths)

    def one_round() -> float:
        repo = Repo(str(path))
        total = 0

        def run() -> None:
            nonlocal total
            tree_id = repo[commit_id.encode()].tree  # type: ignore[attr-defined]
            for p in paths:
                _, sha = tree_lookup_path(repo.__getitem__, tree_id, p.encode())
                total += len(repo[sha].data)  # type: ignore[attr-defined]

        elapsed = timed(run)
        repo.close()
        assert total == expected
        return elapsed

    return one_round


def best_rates(contenders: dict[str, Contender], units: int, rounds: int) -> dict[str, float]:
    """Rounds interleave the contenders so a burst of machine load hits them
    all alike; each keeps its best round."""
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, contender in contenders.items():
            best[name] = max(best[name], units / contender())
    return best


# -- report ---------------------------------------------------------------------------


def table(title: str, unit: str, rows: dict[str, float], reference: str) -> str:
    lines = [title, f"  {'contender':<34} {unit:>12} {'vs dulwich':>11}"]
    for name, rate in rows.items():
        lines.append(f"  {name:<34} {rate:>12,.0f} {rate / rows[reference]:>10.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=100, help="per round")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, rounds = args.transactions, args.rounds

    with tempfile.TemporaryDirectory(prefix="dk-client-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        git_conn = stack.enter_context(connect(work / "client.git"))
        mem_conn = stack.enter_context(connect(stack.enter_context(server(work, "mem"))))
        disk_address = stack.enter_context(server(work, "disk", git=work / "server.git"))
        disk_conn = stack.enter_context(connect(disk_address))
        tx = best_rates(
            {
                "raw dulwich, disk repo": dulwich_transactions(work / "raw.git", n),
                "Git backend, disk repo": client_transactions(git_conn, n),
                "9p backend -> server (memory)": client_transactions(mem_conn, n),
                "9p backend -> server (--git)": client_transactions(disk_conn, n),
            },
            n,
            rounds,
        )

        paths = snapshot_paths(args.files)
        snap = work / "snapshot.git"
        commit_id = build_snapshot(snap, paths)
        snap_address = stack.enter_context(server(work, "snap", git=snap))
        rd = best_rates(
            {
                "raw dulwich": dulwich_reads(snap, commit_id, paths),
                "Git backend": client_reads(lambda: connect(snap), commit_id, paths),
                "9p backend -> server (--git)": client_reads(
                    lambda: connect(snap_address), commit_id, paths
                ),
            },
            len(paths),
            rounds,
        )

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {rounds} rounds\n")
    print(table(f"1-file transactions ({n} per round)", "tx/s", tx, "raw dulwich, disk repo"))
    print()
    title = f"reading {len(paths):,} small files from a packed snapshot (fresh connection)"
    print(table(title, "files/s", rd, "raw dulwich"))


if __name__ == "__main__":
    main()
