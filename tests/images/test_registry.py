"""datakit.images.registry against Debian's real registry, with a fault-injecting proxy.

Blob uploads (monolithic with Debian's 202 + query Location, chunked, resumed
after a 416 or a lost chunk), mounts and manifests (spec B.3, Part D, IM-14).
Auth and error reporting are in test_registry_auth.py and test_registry_errors.py.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import httpx
import pytest

from datakit.images.oci import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from datakit.images.oci import digest_of as sha256_digest
from datakit.images.registry import Registry, RegistryError
from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc

UPLOADS = r"/blobs/uploads/"


def blob_file(tmp_path: Path, size: int, name: str = "blob") -> tuple[Path, str]:
    """A file of `size` pseudo-random bytes and its digest."""
    path = tmp_path / name
    data = os.urandom(size)
    path.write_bytes(data)
    return path, sha256_digest(data)


def stored(registry: RegistryProc, repository: str, digest: str) -> bytes:
    """The blob as the registry serves it (read without our client)."""
    r = httpx.get(f"{registry.url}/v2/{repository}/blobs/{digest}", timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def test_monolithic_upload_puts_to_the_location_with_its_query(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    path, digest = blob_file(tmp_path, 5000)
    sent: list[int] = []
    with Registry(proxy.address, plain_http=True, progress=sent.append) as reg:
        assert not reg.has_blob("dk/site", digest)
        with path.open("rb") as f:
            f.seek(123)  # anywhere: the client starts from the beginning
            reg.upload_blob("dk/site", digest, 5000, f)
        assert reg.has_blob("dk/site", digest)
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    assert sum(sent) == 5000
    methods = [(m, s) for m, p, s in proxy.requests if UPLOADS in p]
    assert methods == [("POST", 202), ("PUT", 201)]
    put_headers = proxy.headers[[m for m, _, _ in proxy.requests].index("PUT")]
    assert put_headers["content-length"] == "5000"
    assert put_headers["content-type"] == "application/octet-stream"
    assert "transfer-encoding" not in put_headers
    put = next(p for m, p, _ in proxy.requests if m == "PUT")
    # Debian's Location already carries ?_state=...; the digest is joined with '&'.
    assert re.search(r"\?_state=[^&]+&digest=sha256:[0-9a-f]{64}$", put), put


def test_chunked_upload_above_chunk_size(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    size = 5 * 65536 + 7
    path, digest = blob_file(tmp_path, size)
    sent: list[int] = []
    with Registry(proxy.address, plain_http=True, chunk_size=65536, progress=sent.append) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/site", digest, size, f)
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    assert sum(sent) == size
    assert proxy.count("PATCH", UPLOADS, 202) == 6
    patches = [
        h for (m, _, _), h in zip(proxy.requests, proxy.headers, strict=True) if m == "PATCH"
    ]
    ends = [*range(65535, size - 1, 65536), size - 1]
    assert [h["content-range"] for h in patches] == [f"{e - e % 65536}-{e}" for e in ends]
    assert [int(h["content-length"]) for h in patches] == [65536] * 5 + [7]
    assert {h["content-type"] for h in patches} == {"application/octet-stream"}
    assert proxy.count("PUT", UPLOADS + r".*&digest=", 201) == 1
    assert proxy.count("POST", UPLOADS) == 1


def test_416_mid_chunking_resumes_from_the_registrys_offset(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    size = 4 * 65536 + 100
    path, digest = blob_file(tmp_path, size)
    proxy.fail_next("PATCH", UPLOADS, 416, after=2, code="RANGE_INVALID")
    sent: list[int] = []
    with Registry(proxy.address, plain_http=True, chunk_size=65536, progress=sent.append) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/site", digest, size, f)
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    assert sum(sent) == size  # the resent chunk is not counted twice
    trail = [(m, s) for m, p, s in proxy.requests if UPLOADS in p]
    assert trail == [
        ("POST", 202),
        ("PATCH", 202),
        ("PATCH", 202),
        ("PATCH", 416),
        ("GET", 204),  # where does the session stand?
        ("PATCH", 202),
        ("PATCH", 202),
        ("PATCH", 202),
        ("PUT", 201),
    ]


def test_dropped_patch_resumes(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    size = 3 * 65536 + 1
    path, digest = blob_file(tmp_path, size)
    proxy.drop_next("PATCH", UPLOADS, after=1)
    with Registry(proxy.address, plain_http=True, chunk_size=65536) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/site", digest, size, f)
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    trail = [(m, s) for m, p, s in proxy.requests if UPLOADS in p]
    assert trail[:4] == [("POST", 202), ("PATCH", 202), ("PATCH", 0), ("GET", 204)]
    assert proxy.count("POST", UPLOADS) == 1  # resumed in the same session
    assert proxy.count("PATCH", UPLOADS, 202) == 4


def test_chunk_applied_but_answer_lost_restarts_the_session(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    # The registry took the chunk but its answer never came: Debian's registry
    # then refuses the stale upload state (BLOB_UPLOAD_INVALID) and cancels the
    # session, so the only way on is a new session from byte 0.
    size = 3 * 65536 + 1
    path, digest = blob_file(tmp_path, size)
    proxy.drop_answer_next("PATCH", UPLOADS, after=1)
    with Registry(proxy.address, plain_http=True, chunk_size=65536) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/site", digest, size, f)
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    assert ("PATCH", -202) in [(m, s) for m, _, s in proxy.requests]
    assert proxy.count("POST", UPLOADS, 202) == 2


def test_lost_monolithic_put_starts_a_new_session(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    path, digest = blob_file(tmp_path, 4000)
    proxy.drop_next("PUT", UPLOADS)
    sent: list[int] = []
    with Registry(proxy.address, plain_http=True, progress=sent.append) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/site", digest, 4000, f)
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    assert sum(sent) == 4000
    trail = [(m, s) for m, p, s in proxy.requests if "/blobs/" in p]
    assert trail == [("POST", 202), ("PUT", 0), ("HEAD", 404), ("POST", 202), ("PUT", 201)]


def test_lost_answer_to_the_closing_put_is_success_when_the_blob_is_there(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    path, digest = blob_file(tmp_path, 3 * 1000)
    proxy.drop_answer_next("PUT", UPLOADS)
    with Registry(proxy.address, plain_http=True, chunk_size=1000) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/site", digest, 3000, f)
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    trail = [(m, s) for m, p, s in proxy.requests if "/blobs/" in p]
    assert trail[-2:] == [("PUT", -201), ("HEAD", 200)]
    assert proxy.count("POST", UPLOADS) == 1


@pytest.mark.parametrize(("size", "chunk_size", "patches"), [(0, 1000, 0), (3000, 1000, 3)])
def test_empty_blob_and_exact_chunk_multiple(
    tmp_path: Path,
    registry: RegistryProc,
    proxy: RegistryProxy,
    size: int,
    chunk_size: int,
    patches: int,
) -> None:
    path, digest = blob_file(tmp_path, size)
    with Registry(proxy.address, plain_http=True, chunk_size=chunk_size) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/site", digest, size, f)
        assert reg.has_blob("dk/site", digest)
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    assert proxy.count("PATCH", UPLOADS, 202) == patches


def test_endless_416_gives_up_with_one_line(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    path, digest = blob_file(tmp_path, 3 * 1024)
    proxy.fail_next("PATCH", UPLOADS, 416, times=1000)
    with Registry(proxy.address, plain_http=True, chunk_size=1024) as reg:
        with path.open("rb") as f, pytest.raises(RegistryError) as info:
            reg.upload_blob("dk/site", digest, 3 * 1024, f)
    message = str(info.value)
    assert "\n" not in message
    assert proxy.address in message and "416" in message and "giving up" in message
    with Registry(registry.address, plain_http=True) as reg:
        assert not reg.has_blob("dk/site", digest)


def test_upload_of_a_short_file_fails_cleanly(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    path, digest = blob_file(tmp_path, 100)
    with Registry(proxy.address, plain_http=True) as reg:
        with path.open("rb") as f, pytest.raises(RegistryError) as info:
            reg.upload_blob("dk/site", digest, 200, f)
    assert "ended at byte 100" in str(info.value)


def test_mount_across_repositories(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    path, digest = blob_file(tmp_path, 2000)
    with Registry(proxy.address, plain_http=True) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/base", digest, 2000, f)
        assert not reg.has_blob("dk/site", digest)
        assert reg.mount_blob("dk/site", digest, "dk/base") is True
        assert reg.has_blob("dk/site", digest)
        absent = sha256_digest(b"not in the registry")
        assert reg.mount_blob("dk/other", absent, "dk/base") is False
        assert not reg.has_blob("dk/other", absent)
        proxy.fail_next("POST", r"\?mount=", 405, code="UNSUPPORTED")
        assert reg.mount_blob("dk/third", digest, "dk/base") is False
        proxy.fail_next("POST", r"\?mount=", 500, code="UNKNOWN")
        with pytest.raises(RegistryError, match="HTTP 500"):
            reg.mount_blob("dk/third", digest, "dk/base")
    assert stored(registry, "dk/site", digest) == path.read_bytes()
    assert proxy.count("POST", r"/v2/dk/site/blobs/uploads/\?mount=sha256", 201) == 1
    assert proxy.count("POST", r"/v2/dk/other/blobs/uploads/\?mount=", 202) == 1
    # The session the registry opened instead of mounting is cancelled.
    assert proxy.count("DELETE", r"/v2/dk/other/blobs/uploads/", 204) == 1
    assert proxy.count("PUT", UPLOADS) == 1  # only the first upload


def push_image(reg: Registry, repository: str, media_type: str = OCI_MANIFEST) -> bytes:
    """Upload a config and a layer; return manifest bytes naming them (oddly formatted)."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = os.urandom(1000)
    for blob in (config, layer):
        reg.upload_blob(repository, sha256_digest(blob), len(blob), io.BytesIO(blob))
    config_type = (
        "application/vnd.oci.image.config.v1+json"
        if media_type == OCI_MANIFEST
        else "application/vnd.docker.container.image.v1+json"
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": sha256_digest(config), "size": len(config)},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256_digest(layer),
                "size": len(layer),
            }
        ],
        "annotations": {"z": "last", "a": "first, ünïcode"},
    }
    # Indentation, key order and non-ASCII kept: the registry must store these exact bytes.
    return json.dumps(manifest, indent=3, ensure_ascii=False).encode() + b"\n"


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_put_and_get_exact_bytes_and_digest(
    registry: RegistryProc, proxy: RegistryProxy, media_type: str
) -> None:
    with Registry(proxy.address, plain_http=True) as reg:
        assert reg.get_manifest("dk/site", "v1") is None
        data = push_image(reg, "dk/site", media_type)
        digest = reg.put_manifest("dk/site", "v1", data, media_type)
        assert digest == sha256_digest(data)
        by_tag = reg.get_manifest("dk/site", "v1")
        by_digest = reg.get_manifest("dk/site", digest)
    assert by_tag is not None and by_digest is not None
    assert by_tag.data == data and by_digest.data == data
    assert by_tag.digest == digest and by_tag.media_type == media_type
    assert by_tag.json()["annotations"] == {"z": "last", "a": "first, ünïcode"}
    head = httpx.head(
        f"{registry.url}/v2/dk/site/manifests/v1",
        headers={"Accept": media_type},
        timeout=30,
    )
    assert head.headers["Docker-Content-Digest"] == digest


def test_manifest_naming_an_absent_blob_is_refused_with_the_registry_code(
    registry: RegistryProc,
) -> None:
    absent = sha256_digest(b"absent")
    data = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": absent,
                "size": 6,
            },
            "layers": [],
        }
    ).encode()
    with Registry(registry.address, plain_http=True) as reg:
        with pytest.raises(RegistryError) as info:
            reg.put_manifest("dk/site", "v1", data, OCI_MANIFEST)
    message = str(info.value)
    assert "MANIFEST_BLOB_UNKNOWN" in message and "400" in message
    assert message.startswith(registry.address) and "dk/site:v1" in message


def test_wrong_docker_content_digest_is_an_error(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    with Registry(proxy.address, plain_http=True) as reg:
        data = push_image(reg, "dk/site")
        proxy.rewrite_digest_next("PUT", r"/manifests/")
        with pytest.raises(RegistryError, match="reports digest sha256:") as info:
            reg.put_manifest("dk/site", "v1", data, OCI_MANIFEST)
        assert "\n" not in str(info.value) and "dk/site:v1" in str(info.value)

        proxy.rewrite_digest_next("GET", r"/manifests/v1")
        with pytest.raises(RegistryError, match="reports digest"):
            reg.get_manifest("dk/site", "v1")
        assert reg.get_manifest("dk/site", "v1") is not None  # next time all is well

        path, digest = blob_file(tmp_path, 300)
        proxy.rewrite_digest_next("PUT", UPLOADS)
        with path.open("rb") as f, pytest.raises(RegistryError, match="reports digest"):
            reg.upload_blob("dk/site", digest, 300, f)


def test_get_blob_checks_size_cap_and_digest(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    path, digest = blob_file(tmp_path, 10_000)
    with Registry(proxy.address, plain_http=True) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/site", digest, 10_000, f)
        assert reg.get_blob("dk/site", digest) == path.read_bytes()
        with pytest.raises(RegistryError, match="larger than 9999 bytes"):
            reg.get_blob("dk/site", digest, max_size=9999)
        with pytest.raises(RegistryError, match="404"):
            reg.get_blob("dk/site", sha256_digest(b"nothing"))


def test_index_put_and_get(registry: RegistryProc, proxy: RegistryProxy) -> None:
    with Registry(proxy.address, plain_http=True) as reg:
        data = push_image(reg, "dk/site")
        digest = reg.put_manifest("dk/site", sha256_digest(data), data, OCI_MANIFEST)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": digest,
                        "size": len(data),
                        "platform": {"architecture": "amd64", "os": "linux"},
                    }
                ],
            }
        ).encode()
        index_digest = reg.put_manifest("dk/site", "multi", index, OCI_INDEX)
        got = reg.get_manifest("dk/site", "multi")
        assert proxy.headers[-1]["accept"].count("application/vnd.") == 4
    assert got is not None
    assert (got.data, got.media_type, got.digest) == (index, OCI_INDEX, index_digest)


def test_download_blob_streams_any_size_into_a_file(
    tmp_path: Path, registry: RegistryProc, proxy: RegistryProxy
) -> None:
    """How a base layer is copied when the registry will not mount it: larger
    than any document we read whole, checked against its digest."""
    size = 5 * 1024 * 1024 + 7
    path, digest = blob_file(tmp_path, size)
    with Registry(proxy.address, plain_http=True) as reg:
        with path.open("rb") as f:
            reg.upload_blob("dk/base", digest, size, f)
        dest = tmp_path / "copy"
        assert reg.download_blob("dk/base", digest, dest) == size
        assert dest.read_bytes() == path.read_bytes()
        with pytest.raises(RegistryError, match="404"):
            reg.download_blob("dk/base", sha256_digest(b"nothing"), tmp_path / "none")
