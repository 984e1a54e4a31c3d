"""The fs tree over a memory store, its nodes called directly (no server)."""

from __future__ import annotations

import pytest

from datakit.fs.database import Database
from datakit.fs.root import Root
from datakit.store import Store


@pytest.fixture
def database() -> Database:
    return Database(Store.memory())


@pytest.fixture
def root(database: Database) -> Root:
    """One connection's tree."""
    return database.connect()
