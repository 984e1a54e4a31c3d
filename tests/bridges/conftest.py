"""Fixtures shared by the bridge tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bridges.fakegithub import FakeGitHub, running_fake


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A started fake GitHub with no token check and repository `u/r` (empty:
    no refs yet).  API base URL: `fake_github.base_url`."""
    with running_fake() as fake:
        fake.create_repo("u/r")
        yield fake
