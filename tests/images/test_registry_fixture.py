"""The registry fixture itself: it answers, logs requests, enforces htpasswd, stops cleanly."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.images.registryproc import RegistryProc, running_registry


def test_registry_answers_and_logs_requests(registry: RegistryProc) -> None:
    r = httpx.get(f"{registry.url}/v2/", timeout=10)
    assert r.status_code == 200
    r = httpx.head(f"{registry.url}/v2/dk/site/blobs/sha256:{'0' * 64}", timeout=10)
    assert r.status_code == 404
    assert ("HEAD", f"/v2/dk/site/blobs/sha256:{'0' * 64}", 404) in registry.requests()


def test_registry_with_htpasswd_requires_basic_auth(tmp_path: Path) -> None:
    with running_registry(tmp_path / "r", htpasswd={"alice": "s3cret"}) as reg:
        assert httpx.get(f"{reg.url}/v2/", timeout=10).status_code == 401
        ok = httpx.get(f"{reg.url}/v2/", auth=("alice", "s3cret"), timeout=10)
        assert ok.status_code == 200
        bad = httpx.get(f"{reg.url}/v2/", auth=("alice", "wrong"), timeout=10)
        assert bad.status_code == 401
    proc = reg.process
    assert proc.poll() is not None
    try:
        httpx.get(f"{reg.url}/v2/", timeout=5)
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("the registry still answers after the block")
