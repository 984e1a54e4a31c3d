"""A real `git daemon` on loopback serving a small repository, for fetch tests."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.gitrepo import GIT_ENV, git
from tests.ports import free_port


@dataclass(frozen=True)
class GitRemote:
    url: str  # git://127.0.0.1:PORT/
    master: str  # what `git rev-parse master` says


@contextmanager
def serve_repository(repo: Path) -> Iterator[GitRemote]:
    """Make `repo` a repository whose master holds `foo` and `x`, and serve it."""
    git(repo, "init", "-q", "-b", "master", str(repo))
    (repo / "foo").write_text("foo\n")
    (repo / "x").write_text("x\n")
    git(repo, "add", "foo", "x")
    git(repo, "commit", "-q", "-m", "initial")
    master = git(repo, "rev-parse", "master")
    with git_daemon(repo) as url:
        yield GitRemote(url, master)


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """Serve every repository under `base` (and `base` itself) with `git
    daemon`; yield the URL of `base` (`git://127.0.0.1:PORT/`)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
            "--listen=127.0.0.1", f"--port={port}", str(base),
        ],
        env=GIT_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(10)
