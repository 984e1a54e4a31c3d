"""Fixtures of the scenario suite: a real `git daemon` on loopback for remotes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gitdaemon import GitRemote, serve_repository


@pytest.fixture(scope="session")
def git_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitRemote]:
    """A repository whose `master` holds `foo` and `x`, served by `git daemon`."""
    with serve_repository(tmp_path_factory.mktemp("remote")) as remote:
        yield remote
