from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.store import Store
from tests.gitrepo import git_bytes


def run_git(*args: str, cwd: Path | str | None = None, input: bytes | None = None) -> str:
    return git_bytes(cwd, *args, input=input).decode()


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = Store.memory() if request.param == "memory" else Store.open(tmp_path / "repo.git")
    yield s
    s.close()


@pytest.fixture
def disk_store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "repo.git")
    yield s
    s.close()


@pytest.fixture
def git():  # type: ignore[no-untyped-def]
    """The real ``git`` binary, with a neutral environment."""
    return run_git
