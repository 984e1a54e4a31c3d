"""Fixtures of the client conformance suite.

Every test taking ``conn`` (or ``backend``) runs three times: the 9p backend
against a server on an in-memory store, the 9p backend against a server
started with ``--git``, and the Git backend directly on a repository.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from datakit.client import Connection, connect
from tests.gitdaemon import GitRemote, serve_repository
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


@pytest.fixture(scope="session")
def git_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitRemote]:
    """A repository whose master holds ``foo`` and ``x``, served by a real
    ``git daemon`` on loopback."""
    with serve_repository(tmp_path_factory.mktemp("remote")) as remote:
        yield remote
