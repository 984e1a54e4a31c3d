from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.store import Store


def run_git(*args: str, cwd: Path | str | None = None, input: bytes | None = None) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, check=True, env=env
    )
    return out.stdout.decode()


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
