"""Fixtures for the container tests: podman, and the images built from the Dockerfile.

These tests need root and podman (scripts/container-setup.sh installs and
configures it; the CI runs it first).  A missing podman is a failure, not a
skip.  If podman is there but its configuration or the stand-in base image is
missing, the setup script is run from here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.podman import (
    LABEL,
    Podman,
    base_image,
    ready_podman,
)

SERVER_TAG = "localhost/datakit-test/db:latest"
CLIENT_TAG = "localhost/datakit-test/client:latest"


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    pm = ready_podman(base_image(), "the container tests")
    yield pm
    # Containers of this session that a teardown could not remove.
    leftovers = pm.run("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    pm.remove(*leftovers)
    # Untagged images a day old: earlier builds' stages (recent ones are the
    # layer cache), or images another session was using when it rebuilt.
    pm.run("image", "prune", "-f", "--filter", "until=24h", check=False, timeout=300)


def _build(podman: Podman, tag: str, target: str | None, logdir: Path) -> str:
    log = logdir / f"build-{target or 'default'}.log"
    before = podman.image_id(tag)
    seconds = podman.build(tag, log, target=target)
    what = "unchanged, not rebuilt" if seconds is None else f"{seconds:.1f} s"
    print(f"podman build {target or '(default target)'}: {what} (log {log})")
    if before and before != podman.image_id(tag):
        # The tag moved: drop the previous image and its now unused layers (the
        # new one stays tagged as the next run's cache).
        podman.run("rmi", before, check=False, timeout=300)
    return tag


@pytest.fixture(scope="session")
def server_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Dockerfile's default target (the server image), built with podman."""
    return _build(podman, SERVER_TAG, None, tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="session")
def client_image(
    podman: Podman, server_image: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The `client` target (built after the server image, so it reuses its layers)."""
    return _build(podman, CLIENT_TAG, "client", tmp_path_factory.mktemp("build"))


@pytest.fixture
def volume(podman: Podman) -> Iterator[str]:
    """A fresh named volume (podman copies the image's /data, owner included, into it)."""
    name = f"datakit-test-{os.getpid()}-{time.monotonic_ns()}"
    podman.run("volume", "create", "--label", LABEL, name)
    yield name
    containers = podman.run("ps", "-aq", "--filter", f"volume={name}", check=False).stdout.split()
    podman.remove(*containers)
    podman.run("volume", "rm", "-f", name, check=False)
