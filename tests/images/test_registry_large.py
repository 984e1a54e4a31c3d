"""A blob above the default 64 MiB chunk size goes up in chunks, resumes after a 416,
and is streamed from its file (IM-14 at client level)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import httpx

from datakit.images.registry import Registry
from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc

MiB = 1024 * 1024


def test_large_blob_default_chunks_416_and_bounded_memory(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    size = 70 * MiB + 12345
    path = tmp_path / "layer"
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            piece = os.urandom(min(4 * MiB, left))
            h.update(piece)
            f.write(piece)
            left -= len(piece)
    digest = "sha256:" + h.hexdigest()
    proxy.fail_next("PATCH", r"/blobs/uploads/", 416, after=1)
    sent: list[int] = []
    tracemalloc.start()
    try:
        with Registry(proxy.address, plain_http=True, progress=sent.append) as reg:
            with path.open("rb") as f:
                reg.upload_blob("dk/big", digest, size, f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The client (and the proxy, same process) never held the blob, nor a chunk of it.
    assert peak < 16 * MiB, f"peak Python allocations {peak / MiB:.1f} MiB"
    assert sum(sent) == size
    trail = [(m, s) for m, p, s in proxy.requests if "/blobs/uploads/" in p]
    assert trail == [
        ("POST", 202),
        ("PATCH", 202),
        ("PATCH", 416),
        ("GET", 204),
        ("PATCH", 202),
        ("PUT", 201),
    ]
    head = httpx.head(f"{registry.url}/v2/dk/big/blobs/{digest}", timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == size
    check = hashlib.sha256()
    with httpx.stream("GET", f"{registry.url}/v2/dk/big/blobs/{digest}", timeout=60) as r:
        for piece in r.iter_bytes():
            check.update(piece)
    assert "sha256:" + check.hexdigest() == digest
