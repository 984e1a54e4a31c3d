"""Fixtures of the DataKitCI scenarios (tests/ci/test_ci_*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bridges.conftest import fake_github  # noqa: F401 (the fixture, for CI-13)
from tests.ci.cihelpers import CIStack, ci_stack_on
from tests.operations.procs import datakit_process


@pytest.fixture
def ci_stack(tmp_path: Path) -> Iterator[CIStack]:
    """Spec Part C's setup: `datakit serve` (memory), repository `p` with
    master at m1 (``ci_stack.m1``), the local bridge `me/p:p`; the test
    writes the configuration (``configure``) and starts the CI (``start``)."""
    with datakit_process() as (port, _metrics, _proc):
        with ci_stack_on(tmp_path, port) as stack:
            yield stack
