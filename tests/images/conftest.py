"""Fixtures for image tests: a real registry per test, and a proxy in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc, running_registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProc]:
    """A fresh Debian `docker-registry` on 127.0.0.1 (plain HTTP, no auth), storage in tmp_path.

    `registry.address` is "127.0.0.1:PORT" (push with --plain-http).
    What the registry saw: `registry.requests()` -> [(method, path?query, status), ...]
    from its access log, or `registry.log()` for the whole log (file
    `registry.log_path`, i.e. tmp_path/"registry"/"registry.log"). It is stopped
    after the test. For a registry with Basic auth use
    `running_registry(tmp_path / "authreg", htpasswd={"user": "pw"})` directly."""
    with running_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def proxy(registry: RegistryProc) -> Iterator[RegistryProxy]:
    """A recording, fault-injecting proxy in front of `registry` (see tests/images/proxy.py).

    Point a client at `proxy.address`; `proxy.requests` lists what it sent."""
    with RegistryProxy(registry.address) as p:
        yield p
