#!/usr/bin/env python3
"""`datakit image` on a large tree, against skopeo, in one run.

A Git repository with FILES small files (default 100,000) in 100
directories, a Debian `docker-registry` on loopback with its own config, and:

1. `image export` of the whole tree to an OCI layout: time and peak RSS;
2. `image push` of the whole tree (full): time, RSS, bytes sent;
3. one file changed and committed, `image push` again (a delta): time and
   the bytes the registry received;
4. the ratio to beat: `skopeo copy` of an OCI layout of the changed tree
   (what a tool without tree diffs uploads after a one-file change: the
   whole tree again) to a fresh repository of the same registry.

Sizes come from the registry's access log, not from our own output.
Run: python bench/image_bench.py [--files N]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_repo(path: Path, files: int, size: int = 1024) -> None:
    """A repository with ``files`` files of ``size`` bytes of base64 text (so
    gzip gains what it does on source code, not 100x) through git
    fast-import (seconds, not minutes), in 100 directories. Streamed, so
    this process stays small: its children's peak RSS is measured."""
    rng = random.Random(12)
    subprocess.run(["git", "init", "-q", "-b", "master", str(path)], check=True)
    per_dir = max(files // 100, 1)
    proc = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet"], stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    proc.stdin.write(
        b"commit refs/heads/master\n"
        b"committer bench <bench@example.com> 1700000000 +0000\n"
        b"data 9\nbig tree\n"
    )
    for i in range(files):
        body = base64.b64encode(rng.randbytes(size * 3 // 4))[:size]
        name = f"d{i // per_dir:03d}/f{i:06d}.txt".encode()
        proc.stdin.write(
            b"M 100644 inline " + name + b"\n" + b"data %d\n" % len(body) + body + b"\n"
        )
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")


def change_one_file(path: Path) -> None:
    lines = [
        b"commit refs/heads/master\n",
        b"committer bench <bench@example.com> 1700000100 +0000\n",
        b"data 9\none file\n",
        b"from refs/heads/master^0\n",
        b"M 100644 inline d050/changed.txt\n",
        b"data 8\nchanged\n\n",
    ]
    subprocess.run(
        ["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(lines), check=True
    )


def start_registry(workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "registry.yml"
    config.write_text(
        f"version: 0.1\nlog: {{level: info, accesslog: {{disabled: false}}}}\n"
        f"storage: {{filesystem: {{rootdirectory: {workdir}/storage}}}}\n"
        "http: {addr: '127.0.0.1:0', secret: bench}\n"
    )
    log = workdir / "registry.log"
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r'listening on 127\.0\.0\.1:(\d+)"', log.read_text(errors="replace"))
        if m:
            return proc, f"127.0.0.1:{m.group(1)}", log
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("docker-registry did not start")


def rss_of(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one command run to completion.

    The RSS comes from GNU time, whose own child starts small: ru_maxrss of
    a child of this (larger) process would count the pages it had before
    execve."""
    with tempfile.NamedTemporaryFile() as rss:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", rss.name, "-f", "%M", *cmd], capture_output=True
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()}")
        peak_kb = int(Path(rss.name).read_text().split()[-1])
        return elapsed, peak_kb / 1024, proc.stdout.decode().strip()


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per file")
    args = parser.parse_args()
    image = [sys.executable, "-m", "datakit", "image"]
    with tempfile.TemporaryDirectory(prefix="image-bench-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        t = time.perf_counter()
        make_repo(repo, args.files, args.size)
        print(
            f"repository with {args.files} files of {args.size} bytes made in "
            f"{time.perf_counter() - t:.1f} s"
        )
        registry, address, _ = start_registry(work / "registry")
        try:
            rows = []
            secs, rss, out = rss_of(
                [
                    *image,
                    "export",
                    "--db",
                    str(repo),
                    "--branch",
                    "master",
                    "--oci-layout",
                    f"{work}/layout:v1",
                ]
            )
            rows.append(("export, full (OCI layout)", secs, rss, du(work / "layout"), out))
            storage = work / "registry" / "storage"
            push = [*image, "push", "--db", str(repo), "--branch", "master", "--plain-http"]
            push += ["--to", f"{address}/bench/tree:latest"]
            before = du(storage) if storage.exists() else 0
            secs, rss, out = rss_of(push)
            rows.append(("push, full", secs, rss, du(storage) - before, out))
            change_one_file(repo)
            before = du(storage)
            secs, rss, out = rss_of(push)
            delta_secs, delta_bytes = secs, du(storage) - before
            rows.append(("push, one-file delta", secs, rss, delta_bytes, out))
            secs, rss, out = rss_of(
                [
                    *image,
                    "export",
                    "--db",
                    str(repo),
                    "--branch",
                    "master",
                    "--full",
                    "--oci-layout",
                    f"{work}/layout2:v2",
                ]
            )
            before = du(storage)
            secs, rss, out = rss_of(
                [
                    "skopeo",
                    "copy",
                    "-q",
                    "--dest-tls-verify=false",
                    f"oci:{work}/layout2:v2",
                    f"docker://{address}/bench/skopeo:v2",
                ]
            )
            skopeo_secs, skopeo_bytes = secs, du(storage) - before
            rows.append(("skopeo copy of the changed tree", secs, rss, skopeo_bytes, ""))
        finally:
            registry.terminate()
            registry.wait()
        print(f"\n{'step':34} {'time':>9} {'peak RSS':>9} {'stored':>12}  result")
        for name, secs, rss, size, out in rows:
            print(f"{name:34} {secs:8.2f}s {rss:7.0f}MB {size:11,d}B  {out[:60]}")
        print(
            f"\none-file change: datakit delta push {delta_secs:.2f} s and {delta_bytes:,d} bytes; "
            f"skopeo copy {skopeo_secs:.2f} s and {skopeo_bytes:,d} bytes: "
            f"{skopeo_secs / delta_secs:.1f}x faster, "
            f"{skopeo_bytes / max(delta_bytes, 1):.0f}x fewer bytes"
        )


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
