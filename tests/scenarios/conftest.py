"""Fixtures of the scenario suite: a real `git daemon` on loopback for remotes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gitdaemon import GitRemote, serve_repository
from tests.serverthread import running_server


@pytest.fixture(scope="session")
def git_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitRemote]:
    """A repository whose `master` holds `foo` and `x`, served by `git daemon`."""
    with serve_repository(tmp_path_factory.mktemp("remote")) as remote:
        yield remote


@pytest.fixture(params=["memory", "git"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every scenario runs against an in-memory store and an on-disk one: on
    disk, ref updates run in a worker thread, and must behave the same."""
    git = str(tmp_path / "repo.git") if request.param == "git" else None
    with running_server(tmp_path, git=git) as address:
        yield address
