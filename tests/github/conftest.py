"""Fixtures: every test taking ``branch`` runs on both client backends, a
real ``datakit serve`` (9p, in-memory store, one process per module) and a
Git repository path (no server)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.client import Branch, Connection, connect
from tests.operations.procs import datakit_process

_names = itertools.count()


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    with datakit_process() as (port, _, _proc):
        yield port


@pytest.fixture(params=["9p-server", "git"])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Connection]:
    if request.param == "git":
        with connect(tmp_path / "meta.git") as c:
            yield c
    else:
        port = request.getfixturevalue("server_port")
        with connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            yield c


@pytest.fixture
def branch(conn: Connection) -> Branch:
    """A fresh branch (the server is shared by the module's tests)."""
    return conn.branch(f"github-metadata-{next(_names)}")
