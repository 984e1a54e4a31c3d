"""Registry auth: htpasswd Basic on the real registry, Bearer tokens via the proxy (IM-15)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from datakit.images.auth import Credentials, find_credentials
from datakit.images.oci import OCI_MANIFEST
from datakit.images.oci import digest_of as sha256_digest
from datakit.images.registry import Registry, RegistryError
from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc, running_registry
from tests.images.test_registry import push_image


def upload(reg: Registry, repository: str, data: bytes) -> str:
    digest = sha256_digest(data)
    reg.upload_blob(repository, digest, len(data), io.BytesIO(data))
    return digest


def test_401_without_credentials_names_the_registry(tmp_path: Path) -> None:
    with running_registry(tmp_path / "r", htpasswd={"alice": "s3cret"}) as server:
        with Registry(server.address, plain_http=True) as reg:
            with pytest.raises(RegistryError) as info:
                reg.get_manifest("dk/site", "latest")
            with pytest.raises(RegistryError) as info2:
                upload(reg, "dk/site", b"data")
    for message in (str(info.value), str(info2.value)):
        assert "\n" not in message
        assert message.startswith(f"{server.address}: authentication required (401")
        assert "--auth-file" in message


def test_basic_auth_with_an_auth_file(tmp_path: Path) -> None:
    with running_registry(tmp_path / "r", htpasswd={"alice": "s3cret"}) as server:
        auth_file = tmp_path / "auth.json"
        token = base64.b64encode(b"alice:s3cret").decode()
        auth_file.write_text(json.dumps({"auths": {server.address: {"auth": token}}}))
        creds = find_credentials(server.address, str(auth_file))
        assert creds == Credentials("alice", "s3cret")
        with Registry(server.address, plain_http=True, credentials=creds, chunk_size=1000) as reg:
            upload(reg, "dk/site", b"x" * 2500)  # chunked: every PATCH authenticated
            data = push_image(reg, "dk/site")
            digest = reg.put_manifest("dk/site", "v1", data, OCI_MANIFEST)
            got = reg.get_manifest("dk/site", "v1")
        assert got is not None and got.data == data and got.digest == digest
        assert ("PUT", "/v2/dk/site/manifests/v1", 201) in server.requests()


def test_basic_auth_wrong_password(tmp_path: Path) -> None:
    with running_registry(tmp_path / "r", htpasswd={"alice": "s3cret"}) as server:
        creds = Credentials("alice", "wrong")
        with Registry(server.address, plain_http=True, credentials=creds) as reg:
            with pytest.raises(RegistryError) as info:
                reg.has_blob("dk/site", sha256_digest(b""))
    message = str(info.value)
    assert message.startswith(server.address) and "401" in message
    assert "alice" in message and "refused" in message and "wrong" not in message


def test_bearer_token_flow(registry: RegistryProc, proxy: RegistryProxy) -> None:
    proxy.require_bearer("bob", "pw")
    creds = Credentials("bob", "pw")
    with Registry(proxy.address, plain_http=True, credentials=creds, chunk_size=1000) as reg:
        base = upload(reg, "dk/base", b"b" * 3000)
        assert reg.mount_blob("dk/site", base, "dk/base")  # needs pull on dk/base too
        data = push_image(reg, "dk/site")
        digest = reg.put_manifest("dk/site", "v1", data, OCI_MANIFEST)
        got = reg.get_manifest("dk/site", "v1")
        assert got is not None and got.digest == digest
        # Two tokens: push dk/base, then push dk/site + pull dk/base, which covers
        # everything after (pushing and pulling dk/site).
        assert proxy.count("GET", r"^/token\?", 200) == 2, proxy.requests
        assert proxy.count("PATCH", r"/blobs/uploads/", 202) == 3
        assert proxy.count("POST", r"/v2/dk/site/blobs/uploads/\?mount=", 201) == 1
        # Only the very first request went without a token.
        assert [s for _, _, s in proxy.requests].count(401) == 1

        proxy.expire_tokens()  # the token service forgot them: a fresh token, once
        assert reg.get_manifest("dk/site", "v1") is not None
        assert proxy.count("GET", r"^/token\?", 200) == 3
        assert [s for _, _, s in proxy.requests].count(401) == 2


def test_bearer_without_or_with_wrong_credentials(
    registry: RegistryProc, proxy: RegistryProxy
) -> None:
    proxy.require_bearer("bob", "pw")
    with Registry(proxy.address, plain_http=True) as reg:
        with pytest.raises(RegistryError) as info:
            reg.has_blob("dk/site", sha256_digest(b""))
    message = str(info.value)
    assert message.startswith(proxy.address) and "401" in message and "\n" not in message
    with Registry(proxy.address, plain_http=True, credentials=Credentials("bob", "no")) as reg:
        with pytest.raises(RegistryError) as info:
            reg.has_blob("dk/site", sha256_digest(b""))
    message = str(info.value)
    assert "401" in message and "bob" in message and "token" in message


def test_tls_self_signed_needs_insecure(tmp_path: Path) -> None:
    with running_registry(tmp_path / "r", htpasswd={"alice": "s3cret"}, tls=True) as server:
        creds = Credentials("alice", "s3cret")
        with Registry(server.address, credentials=creds) as reg:
            with pytest.raises(RegistryError) as info:
                reg.has_blob("dk/site", sha256_digest(b""))
        message = str(info.value)
        assert message.startswith(server.address) and "\n" not in message
        assert "CERTIFICATE_VERIFY_FAILED" in message and "--insecure" in message
        with Registry(server.address, credentials=creds, insecure=True) as reg:
            digest = upload(reg, "dk/site", b"over tls")
            assert reg.has_blob("dk/site", digest)
        assert any(m == "PUT" and s == 201 for m, _, s in server.requests())
