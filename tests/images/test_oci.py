"""Unit tests of the OCI documents (datakit/images/oci.py) and the image
layout target (datakit/images/layout.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.images import oci
from datakit.images.layout import LayoutTarget, split_layout
from datakit.images.target import TargetError

HEX = "ab" * 32


def manifest_doc(**extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": f"sha256:{HEX}", "size": 3},
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": f"sha256:{HEX}",
                "size": 10,
            }
        ],
    }
    doc.update(extra)
    return doc


def test_parse_manifest_reads_docker_and_oci() -> None:
    m = oci.parse_manifest(json.dumps(manifest_doc()).encode())
    assert not m.ours and m.layers[0].size == 10
    assert m.layers[0].as_oci_layer().media_type == oci.OCI_LAYER_GZIP
    docker = manifest_doc(mediaType=oci.DOCKER_MANIFEST)
    assert oci.parse_manifest(json.dumps(docker).encode()).media_type == oci.DOCKER_MANIFEST


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schemaVersion": 2, "manifests": []}, "image index"),
        (manifest_doc(schemaVersion=1), "schemaVersion"),
        (manifest_doc(layers={}), "layers list"),
        (manifest_doc(config={"mediaType": "x", "digest": "md5:00", "size": 1}), "digest"),
        (manifest_doc(config={"mediaType": "x", "digest": f"sha256:{HEX}", "size": -1}), "size"),
        (manifest_doc(mediaType="text/plain"), "unsupported type"),
    ],
)
def test_parse_manifest_refuses_what_is_not_one_image(doc: object, message: str) -> None:
    with pytest.raises(oci.ImageFormatError, match=message):
        oci.parse_manifest(json.dumps(doc).encode())


def test_parse_manifest_refuses_junk_and_huge_documents() -> None:
    with pytest.raises(oci.ImageFormatError, match="not JSON"):
        oci.parse_manifest(b"\xff{")
    with pytest.raises(oci.ImageFormatError, match="larger than"):
        oci.parse_manifest(b" " * (oci.MAX_DOCUMENT + 1))


def test_with_layers_appends_without_touching_the_original() -> None:
    base = oci.new_config(oci.Platform.parse("linux/arm64/v8"))
    out = oci.with_layers(base, ["sha256:" + HEX], [oci.History(0, "datakit commit x", "m")], 60)
    assert base["rootfs"]["diff_ids"] == [] and base["history"] == []
    assert out["rootfs"]["diff_ids"] == ["sha256:" + HEX]
    assert out["history"] == [
        {"created": "1970-01-01T00:00:00Z", "created_by": "datakit commit x", "comment": "m"}
    ]
    assert out["created"] == "1970-01-01T00:01:00Z"
    assert (out["architecture"], out["os"], out["variant"]) == ("arm64", "linux", "v8")
    oci.check_config(out, 1, "test")
    with pytest.raises(oci.ImageFormatError, match="names 1 layer DiffIDs, the manifest 2"):
        oci.check_config(out, 2, "test")


def test_config_bytes_do_not_depend_on_key_order() -> None:
    a = {"os": "linux", "architecture": "amd64", "rootfs": {}, "x-extra": 1}
    b = {"x-extra": 1, "rootfs": {}, "architecture": "amd64", "os": "linux"}
    assert oci.config_bytes(a) == oci.config_bytes(b)


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "a/b/c/d"])
def test_platform_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="OS/ARCH"):
        oci.Platform.parse(text)


def test_split_layout() -> None:
    assert split_layout("/tmp/L:v1") == (Path("/tmp/L"), "v1")
    assert split_layout("/tmp/L") == (Path("/tmp/L"), "latest")
    assert split_layout("rel/dir") == (Path("rel/dir"), "latest")
    # A colon in the directory part is not a tag separator.
    assert split_layout("/tmp/a:b/L") == (Path("/tmp/a:b/L"), "latest")
    for bad in ("/tmp/L:bad tag", "/tmp/L:", "/tmp/L:.hidden", ":v1"):
        with pytest.raises(TargetError, match="not a valid tag"):
            split_layout(bad)


def test_layout_keeps_other_tags_and_replaces_its_own(tmp_path: Path) -> None:
    layout = tmp_path / "L"
    one, two = LayoutTarget(layout, "one"), LayoutTarget(layout, "two")
    assert one.current() is None and not layout.exists()
    d1 = one.put_manifest(b'{"a":1}', oci.OCI_MANIFEST)
    d2 = two.put_manifest(b'{"b":2}', oci.OCI_MANIFEST)
    d3 = one.put_manifest(b'{"a":3}', oci.OCI_MANIFEST)
    index = json.loads((layout / "index.json").read_text())
    names = [m["annotations"][oci.ANN_REF_NAME] for m in index["manifests"]]
    assert sorted(names) == ["one", "two"]
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    current = one.current()
    assert current is not None and current.digest == d3 != d1 and current.data == b'{"a":3}'
    assert two.current() is not None and two.current().digest == d2  # type: ignore[union-attr]


def test_layout_refuses_a_directory_that_is_not_a_layout(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("keep me")
    with pytest.raises(TargetError, match="not an OCI image layout"):
        LayoutTarget(tmp_path, "latest")
    assert (tmp_path / "precious").read_text() == "keep me"


def test_layout_checks_blob_digests(tmp_path: Path) -> None:
    target = LayoutTarget(tmp_path / "L", "t")
    digest = oci.digest_of(b"config")
    target.put_blob_bytes(digest, b"config")
    assert target.read_blob(digest, 100) == b"config"
    (tmp_path / "L/blobs/sha256" / digest.split(":")[1]).write_bytes(b"tampered")
    with pytest.raises(TargetError, match="does not match its digest"):
        target.read_blob(digest, 100)
