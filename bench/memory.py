"""Resident memory of a real `datakit serve` process under big files.

Run: python bench/memory.py [--gib 3] [--source DIR]

Scenarios (each on a fresh server with --git in a temporary directory):
  - a file of --gib GiB written into a transaction's rw/ at msize 1 MiB, then
    committed; and the same, then closed without committing;
  - a 17 MiB committed file opened through 20 fids at once, each read whole.

Prints VmRSS before, the peak (VmHWM) and VmRSS after, from /proc/PID/status.
--source runs the server from another source tree (to compare with the
code before a change: `git archive main | tar -x -C /tmp/old`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datakit.client.ninep_client import Client

MiB = 1 << 20
TX = "branch/master/transactions/t"


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024  # MiB
    return out


@contextmanager
def server(source: str | None, repo: str) -> Iterator[tuple[Client, int]]:
    sock = os.path.join(os.path.dirname(repo), "dk.sock")
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = source
    proc = subprocess.Popen(
        [sys.executable, "-m", "datakit", "serve", "-q", "--git", repo,
         "--listen-9p", f"unix://{sock}"],
        env=env,
        cwd=source,  # `python -m` puts the working directory first on sys.path
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = Client.connect(f"unix://{sock}", msize=MiB, version="9P2000.L")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        with client:
            yield client, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def big_write(source: str | None, gib: float, finish: str) -> tuple[str, dict[str, int]]:
    chunk = os.urandom(MiB)  # a repeated random MiB: deflate cannot shrink it
    size = int(gib * 1024) * MiB
    with tempfile.TemporaryDirectory() as d, server(source, f"{d}/repo") as (c, pid):
        c.mkdir("branch/master")
        c.mkdir(TX)
        c.create(f"{TX}/rw/big")
        before = status(pid)["VmRSS"]
        fid = c.open(f"{TX}/rw/big", 1)
        for off in range(0, size, MiB):
            c.write_fid(fid, chunk, off)
        c.clunk(fid)
        written = status(pid)
        c.write(f"{TX}/ctl", finish.encode(), truncate=False)
        after = status(pid)
        row = {
            "before": before,
            "after write": written["VmRSS"],
            "peak": after["VmHWM"],
            f"after {finish}": after["VmRSS"],
        }
        return f"{gib:g} GiB into rw, {finish}", row


def many_opens(source: str | None) -> tuple[str, dict[str, int]]:
    data = os.urandom(17 * MiB)
    with tempfile.TemporaryDirectory() as d, server(source, f"{d}/repo") as (c, pid):
        c.mkdir("branch/master")
        c.mkdir(TX)
        c.create(f"{TX}/rw/f", data)
        c.write(f"{TX}/ctl", b"commit", truncate=False)
        before = status(pid)["VmRSS"]
        fids = [c.open("branch/master/ro/f") for _ in range(20)]
        for fid in fids:
            off = 0
            while chunk := c.read_fid(fid, off):
                off += len(chunk)
            assert off == len(data)
        held = status(pid)
        for fid in fids:
            c.clunk(fid)
        after = status(pid)["VmRSS"]
        row = {"before": before, "open": held["VmRSS"], "peak": held["VmHWM"], "closed": after}
        return "20 opens of a 17 MiB file", row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=3.0, help="size of the big write (GiB)")
    ap.add_argument("--source", help="source tree to run the server from (PYTHONPATH)")
    args = ap.parse_args()
    rows = [
        big_write(args.source, args.gib, "commit"),
        big_write(args.source, args.gib, "close"),
        many_opens(args.source),
    ]
    print(f"server: {args.source or 'this tree'}  (MiB of resident memory, /proc/PID/status)")
    for name, values in rows:
        cells = "  ".join(f"{k} {v:>5}" for k, v in values.items())
        print(f"{name:<32} {cells}")


if __name__ == "__main__":
    main()
