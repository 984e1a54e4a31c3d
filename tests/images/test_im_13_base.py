"""IM-13: a base image (made by hand, copied into the registry with skopeo)
under the DataKit layers, the tree under --prefix."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.imagehelpers import (
    C1_FILES,
    C2_CHANGES,
    DK,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Db,
    expect_error,
    get_manifest,
    git_db,
    layout_to_registry,
    make_layout,
    read_layout,
    rootfs_tree,
    run_image,
    tool,
    tree_of,
    under,
    unpack_ref,
    uploads,
    with_dirs,
)
from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc

BASE_FILES = {"etc/os-release": b'ID=standin\nPRETTY_NAME="a base image"\n'}
BASE_HISTORY = [{"created": "2020-01-02T03:04:05Z", "created_by": "/bin/sh -c #(nop) base"}]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with git_db(tmp_path / "db.git") as d:
        yield d


@pytest.mark.slow
def test_im_13_base_image(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    layout = tmp_path / "base"
    base_digest = make_layout(
        layout, "b", [with_dirs(BASE_FILES)], architecture="arm64", history=BASE_HISTORY
    )
    base = read_layout(layout, "b")
    base_layer = base.layers[0]["digest"]
    base_ref = f"{registry.address}/base/os:1"
    layout_to_registry(layout, "b", base_ref)
    remote_base = get_manifest(registry.address, "base/os", "1")
    assert remote_base is not None

    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    with RegistryProxy(registry.address) as proxy:
        ref = f"{proxy.address}/dk/site:latest"
        args = ("--base", f"{proxy.address}/base/os:1", "--prefix", "/srv/data", "--plain-http")
        seen = len(proxy.requests)
        _digest, how = run_image(
            "push", "--db", db.address, "--commit", c1.id, "--to", ref, *args
        ).one()
        assert how == "full"
        sent = proxy.requests[seen:]
        # the base layer is mounted or found, never uploaded again
        assert not [r for r in sent if r[0] in ("PUT", "PATCH") and base_layer in r[1]], sent
        assert uploads(sent)["patch"] == 0

        manifest = get_manifest(registry.address, "dk/site", "latest")
        assert manifest is not None
        m = manifest.json
        assert m["layers"][0]["digest"] == base_layer
        assert len(m["layers"]) == 2
        assert m["annotations"][DK + "base"] == remote_base.digest == base_digest
        assert m["annotations"][DK + "prefix"] in ("/srv/data", "srv/data", "/srv/data/")
        assert DK + "commit" in m["layers"][1]["annotations"]
        config = json.loads(_blob(registry.address, "dk/site", m["config"]["digest"]))
        assert config["architecture"] == "arm64"
        assert config["config"]["Env"] == base.config["config"]["Env"]
        assert config["history"][0] == BASE_HISTORY[0]
        assert len(config["history"]) == 2
        assert config["history"][1]["created_by"] == f"datakit commit {c1.id}"
        assert config["rootfs"]["diff_ids"][0] == base.config["rootfs"]["diff_ids"][0]

        direct = f"{registry.address}/dk/site:latest"
        want1 = with_dirs(BASE_FILES) | under(tree_of(c1), "srv/data")
        got = rootfs_tree(unpack_ref(direct, tmp_path / "u1"))
        assert got == want1
        assert got["etc/os-release"] == ("file", BASE_FILES["etc/os-release"])
        assert got["srv/data/README"] == ("file", C1_FILES["README"])

        # the next commit is a delta on top, the base kept
        _digest, how = run_image(
            "push", "--db", db.address, "--commit", c2.id, "--to", ref, *args
        ).one()
        assert how == f"delta from {c1.id}"
    m2 = get_manifest(registry.address, "dk/site", "latest")
    assert m2 is not None and len(m2.json["layers"]) == 3
    assert m2.json["layers"][0]["digest"] == base_layer
    want2 = with_dirs(BASE_FILES) | under(tree_of(c2), "srv/data")
    assert rootfs_tree(unpack_ref(direct, tmp_path / "u2")) == want2


def _blob(registry: str, repository: str, digest: str) -> bytes:
    with urllib.request.urlopen(
        f"http://{registry}/v2/{repository}/blobs/{digest}", timeout=30
    ) as resp:
        return bytes(resp.read())


@pytest.mark.slow
def test_im_12_layer_cap_with_base(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    """--max-layers counts DataKit layers only: the base's layers stay
    under the full layer that replaces the DataKit ones."""
    layout = tmp_path / "base"
    make_layout(layout, "b", [with_dirs(BASE_FILES)], history=BASE_HISTORY)
    base = read_layout(layout, "b")
    base_ref = f"{registry.address}/base/os:1"
    layout_to_registry(layout, "b", base_ref)
    ref = f"{registry.address}/dk/capped:latest"
    commits = [db.commit(C1_FILES, "c1")]
    commits += [db.update({f"n{i}": b"%d\n" % i}, f"c{i}") for i in range(2, 5)]
    counts = []
    for i, c in enumerate(commits):
        run_image(
            "push", "--db", db.address, "--commit", c.id, "--to", ref, "--plain-http",
            "--base", base_ref, "--max-layers", "2",
        )  # fmt: skip
        m = get_manifest(registry.address, "dk/capped", "latest")
        assert m is not None
        assert m.json["layers"][0]["digest"] == base.layers[0]["digest"]
        counts.append(len(m.json["layers"]))
        want = with_dirs(BASE_FILES) | tree_of(c)
        assert rootfs_tree(unpack_ref(ref, tmp_path / f"u{i}")) == want
    assert counts == [2, 3, 2, 3]


@pytest.mark.slow
def test_im_13_docker_and_multi_platform_bases(
    db: Db, tmp_path: Path, registry: RegistryProc
) -> None:
    """A base in Docker's schema 2 (its layers re-described with the OCI
    media type, bytes unchanged), and a base that is an OCI index (the
    manifest of --platform is used; a platform it lacks is one error line)."""
    c1 = db.commit(C1_FILES, "c1")
    arm = tmp_path / "arm"
    make_layout(arm, "b", [with_dirs(BASE_FILES)], architecture="arm64")
    tool(
        "skopeo", "copy", "--format", "v2s2", "--dest-tls-verify=false",
        f"oci:{arm}:b", f"docker://{registry.address}/base/docker:1",
    )  # fmt: skip
    docker = get_manifest(registry.address, "base/docker", "1")
    assert docker is not None and docker.media_type == DOCKER_MANIFEST
    ref = f"{registry.address}/dk/site:latest"
    run_image(
        "push", "--db", db.address, "--commit", c1.id, "--to", ref, "--plain-http",
        "--base", f"{registry.address}/base/docker:1", "--prefix", "/srv/data",
    )  # fmt: skip
    m = get_manifest(registry.address, "dk/site", "latest")
    assert m is not None
    first = m.json["layers"][0]
    assert first["digest"] == docker.json["layers"][0]["digest"]
    assert first["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert m.json["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    want_arm = with_dirs(BASE_FILES) | under(tree_of(c1), "srv/data")
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u0")) == want_arm

    # an index over an amd64 and an arm64 image
    amd = tmp_path / "amd"
    amd_files = {"etc/os-release": b"ID=amd64\n"}
    make_layout(amd, "a", [with_dirs(amd_files)], architecture="amd64")
    layout_to_registry(amd, "a", f"{registry.address}/base/multi:amd64")
    layout_to_registry(arm, "b", f"{registry.address}/base/multi:arm64")
    entries = []
    for tag, arch in (("arm64", "arm64"), ("amd64", "amd64")):
        one = get_manifest(registry.address, "base/multi", tag)
        assert one is not None
        entries.append(
            {"mediaType": OCI_MANIFEST, "digest": one.digest, "size": len(one.data),
             "platform": {"os": "linux", "architecture": arch}}
        )  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    req = urllib.request.Request(
        f"http://{registry.address}/v2/base/multi/manifests/1",
        data=index.encode(),
        method="PUT",
        headers={"Content-Type": OCI_INDEX},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201
    base = f"{registry.address}/base/multi:1"
    for platform, files in (("linux/amd64", amd_files), ("linux/arm64", BASE_FILES)):
        arch = platform.split("/")[1]
        target = f"{registry.address}/dk/{arch}:latest"
        run_image(
            "push", "--db", db.address, "--commit", c1.id, "--to", target, "--plain-http",
            "--base", base, "--prefix", "/srv/data", "--platform", platform,
        )  # fmt: skip
        want = with_dirs(files) | under(tree_of(c1), "srv/data")
        assert rootfs_tree(unpack_ref(target, tmp_path / f"u-{arch}")) == want
        assert config_arch(registry.address, f"dk/{arch}") == arch
    res = run_image(
        "push", "--db", db.address, "--commit", c1.id, "--to", ref, "--plain-http",
        "--base", base, "--platform", "linux/s390x", check=False,
    )  # fmt: skip
    expect_error(res, "linux/s390x")


def config_arch(registry: str, repository: str) -> str:
    m = get_manifest(registry, repository, "latest")
    assert m is not None
    return str(json.loads(_blob(registry, repository, m.json["config"]["digest"]))["architecture"])
