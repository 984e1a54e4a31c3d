"""Commit latency of a `datakit serve --git` with and without 40 fetches
hanging on a remote that never answers (issue #8 point 6).

    PYTHONPATH=. python bench/fetch_hang_bench.py [COMMITS]
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from datakit.client.ninep_client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def commit_latencies(port: int, n: int) -> list[float]:
    out = []
    with Client.connect(f"tcp://127.0.0.1:{port}") as c:
        with contextlib.suppress(Exception):
            c.mkdir("branch/master")
        for i in range(n):
            t = f"branch/master/transactions/b{i}"
            start = time.perf_counter()
            c.mkdir(t)
            c.create(f"{t}/rw/f{i}", b"x" * 100)
            c.write(f"{t}/ctl", b"commit\n")
            out.append(time.perf_counter() - start)
    return out


def hang(port: int, url: str, clients: list[Client]) -> None:
    c = Client.connect(f"tcp://127.0.0.1:{port}")
    clients.append(c)
    with contextlib.suppress(Exception):
        name = f"r{len(clients)}"
        c.mkdir(f"remotes/{name}")
        c.write(f"remotes/{name}/url", url.encode())
        c.write(f"remotes/{name}/fetch", b"master")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    silent.listen(100)
    url = f"git://127.0.0.1:{silent.getsockname()[1]}/r"
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "datakit", "serve", "--git", f"{tmp}/db", "-q",
             "--listen-9p", f"tcp://127.0.0.1:{port}", "--remote-timeout", "3600",
             "--remote-connect-timeout", "3600"]
        )  # fmt: skip
        try:
            for _ in range(200):
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                time.sleep(0.05)
            base = commit_latencies(port, n)
            clients: list[Client] = []
            for _ in range(40):
                threading.Thread(target=hang, args=(port, url, clients), daemon=True).start()
            time.sleep(2)  # let all 40 reach the remote
            loaded = commit_latencies(port, n)
            for label, xs in (("no fetches", base), ("40 hung fetches", loaded)):
                print(
                    f"{label:>16}: median {statistics.median(xs) * 1000:.1f} ms, "
                    f"max {max(xs) * 1000:.1f} ms over {len(xs)} commits"
                )
            for c in clients:
                c.close()
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
