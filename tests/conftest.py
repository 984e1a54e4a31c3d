from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.client.ninep_client import Client
from tests.serverthread import running_server


@pytest.fixture
def example_server(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path, example_tree=True) as address:
        yield address


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A DataKit server on a fresh in-memory store."""
    with running_server(tmp_path) as address:
        yield address


@pytest.fixture
def client(server: str) -> Iterator[Client]:
    with Client.connect(server, timeout=30) as c:
        yield c
