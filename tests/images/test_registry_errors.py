"""Registry failures become one line naming the registry, the operation and the cause."""

from __future__ import annotations

import io
import socket

import pytest

from datakit.images.oci import digest_of as sha256_digest
from datakit.images.registry import Registry, RegistryError
from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc
from tests.ports import free_port


def one_line(error: pytest.ExceptionInfo[RegistryError]) -> str:
    message = str(error.value)
    assert message and "\n" not in message and "Traceback" not in message
    # No chained exception for the CLI to print as a traceback.
    assert error.value.__cause__ is None
    assert error.value.__context__ is None or error.value.__suppress_context__
    return message


def test_registry_down() -> None:
    address = f"127.0.0.1:{free_port()}"
    with Registry(address, plain_http=True) as reg:
        with pytest.raises(RegistryError) as info:
            reg.get_manifest("dk/site", "latest")
    message = one_line(info)
    assert message.startswith(f"{address}: fetching manifest dk/site:latest: cannot connect")


def test_https_to_a_plain_http_registry(registry: RegistryProc) -> None:
    with Registry(registry.address) as reg:  # no plain_http
        with pytest.raises(RegistryError) as info:
            reg.has_blob("dk/site", sha256_digest(b""))
    message = one_line(info)
    assert message.startswith(registry.address) and f"https://{registry.address}" in message
    assert "--plain-http" in message


def test_5xx_names_status_and_registry_error_code(
    registry: RegistryProc, proxy: RegistryProxy
) -> None:
    proxy.fail_next("POST", r"/blobs/uploads/", 503, code="UNAVAILABLE")
    data = b"some layer"
    with Registry(proxy.address, plain_http=True) as reg:
        with pytest.raises(RegistryError) as info:
            reg.upload_blob("dk/site", sha256_digest(data), len(data), io.BytesIO(data))
        proxy.fail_next("GET", r"/manifests/", 500, code="UNKNOWN")
        with pytest.raises(RegistryError) as info2:
            reg.get_manifest("dk/site", "latest")
    message = one_line(info)
    assert message.startswith(f"{proxy.address}: uploading blob {sha256_digest(data)} to dk/site")
    assert "HTTP 503" in message and "UNAVAILABLE" in message
    message = one_line(info2)
    assert "HTTP 500" in message and "UNKNOWN" in message and "dk/site:latest" in message


def test_bad_digest_argument(registry: RegistryProc) -> None:
    with Registry(registry.address, plain_http=True) as reg:
        with pytest.raises(RegistryError) as info:
            reg.upload_blob("dk/site", "md5:abc", 1, io.BytesIO(b"x"))
    assert "md5:abc" in one_line(info)


def test_registry_that_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are accepted by the kernel, never answered
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        with Registry(address, plain_http=True, timeout=0.5) as reg:
            with pytest.raises(RegistryError) as info:
                reg.get_manifest("dk/site", "latest")
            data = b"layer"
            with pytest.raises(RegistryError) as info2:
                reg.upload_blob("dk/site", sha256_digest(data), len(data), io.BytesIO(data))
    assert one_line(info) == (
        f"{address}: fetching manifest dk/site:latest: no answer within 0.5s"
        " (GET /v2/dk/site/manifests/latest)"
    )
    assert "no answer within 0.5s" in one_line(info2)
