"""IM-1 (full export) and IM-2 (reproducible): `datakit image export` into an
OCI image layout, checked with umoci and by reading the blobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.imagehelpers import (
    C1_FILES,
    DK,
    REVISION,
    Db,
    Entry,
    exe,
    git_db,
    layout_blobs,
    link,
    podman_tree,
    read_layout,
    rootfs_modes,
    rootfs_tree,
    run_image,
    sha256,
    tree_of,
    umoci_unpack,
)
from tests.images.registryproc import RegistryProc


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with git_db(tmp_path / "db.git") as d:
        yield d


def test_im_01_full_export(db: Db, tmp_path: Path) -> None:
    c1 = db.commit(C1_FILES, "first snapshot\n\nwith a body")
    layout = tmp_path / "L"
    res = run_image("export", "--db", db.address, "--commit", c1.id, "--oci-layout", f"{layout}:v1")
    digest, how = res.one()
    assert how == "full"

    img = read_layout(layout, "v1")
    assert img.manifest_digest == digest
    img.check_digests()
    assert img.manifest["schemaVersion"] == 2
    assert img.manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"

    # config: os, architecture, one DiffID = sha256 of the uncompressed layer
    assert img.config["os"] == "linux"
    assert img.config["architecture"] == "amd64"
    assert len(img.layers) == 1
    assert img.config["rootfs"] == {"type": "layers", "diff_ids": [sha256(img.layer_tar(0))]}
    history = img.config["history"]
    assert len(history) == 1
    assert history[0]["created_by"] == f"datakit commit {c1.id}"
    assert history[0]["comment"] == "first snapshot"

    # annotations (C.3)
    ann = img.annotations
    assert ann[REVISION] == c1.id
    assert ann[DK + "tree"] == c1.tree_id
    assert "org.opencontainers.image.created" in ann
    assert ann[DK + "base"] == "none"
    layer_ann = img.layers[0].get("annotations") or {}
    assert layer_ann[DK + "commit"] == c1.id
    assert DK + "from" not in layer_ann

    # fixed attributes in the tar (C.2)
    entries = img.layer_entries(0)
    modes = {e.name: (e.type, e.mode) for e in entries}
    assert modes == {
        "README": ("file", 0o644),
        "bin": ("dir", 0o755),
        "bin/run": ("file", 0o755),
        "docs": ("dir", 0o755),
        "docs/a.md": ("file", 0o644),
        "link": ("link", 0o777),
    }
    for e in entries:
        assert (e.uid, e.gid, e.mtime, e.uname, e.gname) == (0, 0, 0, "", ""), e
    assert next(e for e in entries if e.name == "link").linkname == "README"

    # umoci: exactly the commit's paths, kinds, contents and modes
    rootfs = umoci_unpack(layout, "v1", tmp_path / "bundle")
    assert rootfs_tree(rootfs) == tree_of(c1)
    assert rootfs_modes(rootfs) == {
        "README": 0o644,
        "bin": 0o755,
        "bin/run": 0o755,
        "docs": 0o755,
        "docs/a.md": 0o644,
    }


def test_im_02_reproducible(db: Db, tmp_path: Path) -> None:
    c1 = db.commit(C1_FILES, "first")
    one, two = tmp_path / "one", tmp_path / "two"
    d1, _ = run_image(
        "export", "--db", db.address, "--commit", c1.id, "--oci-layout", f"{one}:v1"
    ).one()
    d2, _ = run_image(
        "export", "--db", db.address, "--commit", c1.id, "--oci-layout", f"{two}:v1"
    ).one()
    assert d1 == d2
    assert layout_blobs(one) == layout_blobs(two)
    assert (one / "index.json").read_bytes() == (two / "index.json").read_bytes()

    # another commit with the same tree: same layer, config differs only in
    # history/created
    same = db.commit(C1_FILES, "same tree, another commit")
    assert same.id != c1.id and same.tree_id == c1.tree_id
    three = tmp_path / "three"
    d3, how = run_image(
        "export", "--db", db.address, "--commit", same.id, "--oci-layout", f"{three}:v1"
    ).one()
    assert how == "full"
    a, b = read_layout(one, "v1"), read_layout(three, "v1")
    assert [layer["digest"] for layer in a.layers] == [layer["digest"] for layer in b.layers]
    assert a.config["history"] != b.config["history"]
    strip = {"history", "created"}
    assert {k: v for k, v in a.config.items() if k not in strip} == {
        k: v for k, v in b.config.items() if k not in strip
    }
    assert d3 != d1
    assert b.annotations[REVISION] == same.id


ODD: dict[str, bytes | Entry | None] = {
    "ünïcödé/日本語.txt": b"utf-8 names\n",
    "long/" + "x" * 120 + "/" + "y" * 150: b"a path over 255 bytes (PAX)\n",
    "with space/a b": b"",
    "links/abs": link("/etc/passwd"),
    "links/dangling": link("../nowhere"),
    "links/todir": link("../with space"),
    "empty-exec": exe(b""),
}


@pytest.mark.slow
def test_im_01_odd_names_and_links(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    """Non-ASCII and very long names, empty files, absolute, dangling and
    directory symlinks: umoci and podman both give back exactly the tree."""
    c = db.commit(ODD, "odd")
    layout = tmp_path / "L"
    digest, how = run_image(
        "export", "--db", db.address, "--commit", c.id, "--oci-layout", f"{layout}:v1"
    ).one()
    assert how == "full"
    assert rootfs_tree(umoci_unpack(layout, "v1", tmp_path / "bundle")) == tree_of(c)
    ref = f"{registry.address}/dk/odd:latest"
    pushed, how = run_image(
        "push", "--db", db.address, "--commit", c.id, "--to", ref, "--plain-http"
    ).one()
    assert (pushed, how) == (digest, "full")  # the same image, byte for byte
    assert podman_tree(ref) == tree_of(c)


def test_im_01_options(db: Db, tmp_path: Path) -> None:
    """--platform, --mtime commit and --compression none reach the image."""
    c1 = db.commit(C1_FILES, "c1")
    layout = tmp_path / "L"
    run_image(
        "export", "--db", db.address, "--commit", c1.id, "--oci-layout", f"{layout}:v1",
        "--platform", "linux/arm64", "--mtime", "commit", "--compression", "none",
    )  # fmt: skip
    img = read_layout(layout, "v1")
    img.check_digests()
    assert (img.config["os"], img.config["architecture"]) == ("linux", "arm64")
    assert img.layers[0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert {e.mtime for e in img.layer_entries(0)} == {c1.time}
    assert rootfs_tree(umoci_unpack(layout, "v1", tmp_path / "bundle")) == tree_of(c1)
