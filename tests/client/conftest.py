"""Fixtures of the client conformance suite.

Every test taking ``conn`` (or ``backend``) runs three times: the 9p backend
against a server on an in-memory store, the 9p backend against a server
started with ``--git``, and the Git backend directly on a repository.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from datakit.client import Connection, connect
from tests.serverthread import running_server

BACKENDS = ["9p-memory", "9p-git", "git"]


@dataclass
class Backend:
    """How to open connections to one store (several may be open at once)."""

    name: str
    address: str  # a 9p address, or the repository path for the Git backend
    repo: Path | None  # the Git repository, when there is one

    @property
    def is_9p(self) -> bool:
        return self.name.startswith("9p")

    def open(self, **options: object) -> Connection:
        if self.is_9p:
            return connect(self.address, timeout=30, **options)
        return connect(self.address, author="datakit", **options)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind: str = request.param
    if kind == "9p-memory":
        with running_server(tmp_path) as address:
            yield Backend(kind, address, None)
    elif kind == "9p-git":
        repo = tmp_path / "server.git"
        with running_server(tmp_path, git=str(repo)) as address:
            yield Backend(kind, address, repo)
    else:
        repo = tmp_path / "client.git"
        yield Backend(kind, str(repo), repo)


@pytest.fixture
def conn(backend: Backend) -> Iterator[Connection]:
    with backend.open() as c:
        yield c


@pytest.fixture
def open_conn(backend: Backend) -> Iterator[Callable[[], Connection]]:
    """Extra connections to the same store, closed at the end of the test."""
    opened: list[Connection] = []

    def make() -> Connection:
        c = backend.open()
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


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
def git_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url, master id)`` of a repository whose master holds ``foo`` and
    ``x``, served by a real ``git daemon`` on loopback."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path_factory.mktemp("remote")
    git("init", "-q", "-b", "master", str(repo), cwd=repo)
    (repo / "foo").write_text("foo\n")
    (repo / "x").write_text("x\n")
    git("add", "foo", "x", cwd=repo)
    git("commit", "-q", "-m", "initial", cwd=repo)
    master = git("rev-parse", "master", cwd=repo)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "git", "daemon", "--reuseaddr", "--export-all", f"--base-path={repo}",
            "--listen=127.0.0.1", f"--port={port}", str(repo),
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
        yield f"git://127.0.0.1:{port}/", master
    finally:
        proc.terminate()
        proc.wait(10)
