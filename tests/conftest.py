from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from datakit.client.ninep_client import Client
from tests.serverthread import running_server

# Hypothesis's timing checks (a deadline per example, "input generation is
# slow") are timed tests in disguise: on a shared 2-core machine they fail
# on the load, not on a bug (a full run failed on one). Every property
# still runs all its examples.
settings.register_profile("datakit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("datakit")


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
