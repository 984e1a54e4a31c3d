"""Image reference parsing: what is accepted, and one clear line for what is not."""

from __future__ import annotations

import pytest

from datakit.images.reference import ImageRef, RefError, parse_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/dk/site", ImageRef("127.0.0.1:5000", "dk/site", "latest", None)),
        ("127.0.0.1:5000/dk/site:v1", ImageRef("127.0.0.1:5000", "dk/site", "v1", None)),
        (f"localhost/site@{DIGEST}", ImageRef("localhost", "site", None, DIGEST)),
        (
            f"reg.example.com/a/b/c:t_1.x-2@{DIGEST}",
            ImageRef("reg.example.com", "a/b/c", "t_1.x-2", DIGEST),
        ),
        ("localhost:5000/a__b-c.d", ImageRef("localhost:5000", "a__b-c.d", "latest", None)),
        ("[::1]:5000/dk/site:_x", ImageRef("[::1]:5000", "dk/site", "_x", None)),
        ("docker.io/busybox", ImageRef("docker.io", "library/busybox", "latest", None)),
    ],
)
def test_parse(text: str, expected: ImageRef) -> None:
    assert parse_ref(text) == expected


def test_reference_str_and_api_host() -> None:
    ref = parse_ref("127.0.0.1:5000/dk/site")
    assert ref.reference == "latest" and str(ref) == "127.0.0.1:5000/dk/site:latest"
    ref = parse_ref(f"127.0.0.1:5000/dk/site@{DIGEST}")
    assert ref.reference == DIGEST and str(ref) == f"127.0.0.1:5000/dk/site@{DIGEST}"
    ref = parse_ref(f"127.0.0.1:5000/dk/site:v2@{DIGEST}")
    assert ref.reference == DIGEST and str(ref) == f"127.0.0.1:5000/dk/site:v2@{DIGEST}"
    assert parse_ref(str(ref)) == ref
    assert parse_ref("docker.io/library/x").api_host == "registry-1.docker.io"
    assert parse_ref("127.0.0.1:5000/x").api_host == "127.0.0.1:5000"
    assert parse_ref(f"h.io/x@{DIGEST}").with_tag("v3") == ImageRef("h.io", "x", "v3", None)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("dk/site:v1", "no registry host"),
        ("site", "no registry host"),
        ("127.0.0.1:5000", "no registry host"),
        ("127.0.0.1:5000/", "no repository"),
        ("127.0.0.1:5000/Dk/site", "must be lowercase"),
        ("127.0.0.1:5000/dk//site", "not a valid name"),
        ("127.0.0.1:5000/dk/site-", "not a valid name"),
        ("127.0.0.1:5000/dk/site:.v1", "tag '.v1'"),
        ("127.0.0.1:5000/dk/site:", "tag ''"),
        ("127.0.0.1:5000/dk/site:" + "a" * 129, "at most 128"),
        ("127.0.0.1:5000/dk/site@sha256:abc", "sha256:<64 lowercase hex>"),
        ("127.0.0.1:5000/dk/site@" + DIGEST.upper(), "sha256:<64 lowercase hex>"),
        ("127.0.0.1:99999/dk/site", "port 99999"),
        ("bad_host.io/dk/site", "not a valid registry host"),
        ("127.0.0.1:5000/dk site", "whitespace"),
        ("127.0.0.1:5000/" + "a/" * 128 + "a", "longer than 255"),
    ],
)
def test_refused(text: str, complaint: str) -> None:
    with pytest.raises(RefError) as info:
        parse_ref(text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message
    assert complaint in message
