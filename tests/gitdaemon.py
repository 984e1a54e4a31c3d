"""A real `git daemon` on loopback serving a small repository, for fetch tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_AUTHOR_DATE": "2017-01-01T00:00:00 +0000",
    "GIT_COMMITTER_DATE": "2017-01-01T00:00:00 +0000",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
}


@dataclass(frozen=True)
class GitRemote:
    url: str  # git://127.0.0.1:PORT/
    master: str  # what `git rev-parse master` says


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, env=GIT_ENV)
    return out.stdout.decode().strip()


@contextmanager
def serve_repository(repo: Path) -> Iterator[GitRemote]:
    """Make `repo` a repository whose master holds `foo` and `x`, and serve it."""
    git("init", "-q", "-b", "master", str(repo), cwd=repo)
    (repo / "foo").write_text("foo\n")
    (repo / "x").write_text("x\n")
    git("add", "foo", "x", cwd=repo)
    git("commit", "-q", "-m", "initial", cwd=repo)
    master = git("rev-parse", "master", cwd=repo)
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
