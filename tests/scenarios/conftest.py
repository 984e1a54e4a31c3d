"""Fixtures of the scenario suite: a real `git daemon` on loopback for remotes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenarios.helpers import GitRemote, free_port

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


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, env=GIT_ENV)
    return out.stdout.decode().strip()


@pytest.fixture(scope="session")
def git_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitRemote]:
    """A repository whose `master` holds `foo` and `x`, served by `git daemon`."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path_factory.mktemp("remote")
    git("init", "-q", "-b", "master", str(repo), cwd=repo)
    (repo / "foo").write_text("foo\n")
    (repo / "x").write_text("x\n")
    git("add", "foo", "x", cwd=repo)
    git("commit", "-q", "-m", "initial", cwd=repo)
    master = git("rev-parse", "master", cwd=repo)
    port = free_port()
    proc = subprocess.Popen(
        [
            "git", "daemon", "--reuseaddr", "--export-all", f"--base-path={repo}",
            "--listen=127.0.0.1", f"--port={port}", str(repo),
        ],
        env=GIT_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
        yield GitRemote(f"git://127.0.0.1:{port}/", master)
    finally:
        proc.terminate()
        proc.wait(10)
