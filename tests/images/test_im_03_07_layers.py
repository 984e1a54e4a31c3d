"""IM-3..IM-7 and IM-17: what the delta layers hold (read with tarfile from
the exported layout's blobs) and that umoci and podman apply them to exactly
the new commit's tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.imagehelpers import (
    C1_FILES,
    C2_CHANGES,
    DK,
    REVISION,
    Db,
    exe,
    expect_error,
    get_manifest,
    git_db,
    git_fast_import,
    layout_blobs,
    link,
    names,
    podman_tree,
    read_layout,
    rootfs_tree,
    run_image,
    served_db,
    tree_of,
    umoci_unpack,
    unpack_ref,
)
from tests.images.registryproc import RegistryProc


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with git_db(tmp_path / "db.git") as d:
        yield d


def export(db: Db, commit: str, target: str, *extra: str) -> tuple[str, str]:
    return run_image(
        "export", "--db", db.address, "--commit", commit, "--oci-layout", target, *extra
    ).one()


def test_im_03_delta_layer_contents(db: Db, tmp_path: Path) -> None:
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    layout = tmp_path / "L"
    assert export(db, c1.id, f"{layout}:v1")[1] == "full"
    digest, how = export(db, c2.id, f"{layout}:v1")
    assert how == f"delta from {c1.id}"

    img = read_layout(layout, "v1")
    assert img.manifest_digest == digest
    img.check_digests()
    assert len(img.layers) == 2
    assert img.annotations[REVISION] == c2.id
    entries = img.layer_entries(1)
    # whiteouts first in their directory; a directory before its contents;
    # nothing for README
    assert names(entries) == [".wh.bin", ".wh.link", "docs/", "docs/a.md", "docs/b.md"]
    by_name = {e.name: e for e in entries}
    for wh in (".wh.bin", ".wh.link"):
        assert by_name[wh].type == "file"
        assert by_name[wh].data == b""
        assert by_name[wh].mode == 0o644
    assert by_name["docs/a.md"].data == C2_CHANGES["docs/a.md"]
    assert by_name["docs/b.md"].data == C2_CHANGES["docs/b.md"]
    ann = img.layers[1].get("annotations") or {}
    assert ann[DK + "commit"] == c2.id
    assert ann[DK + "from"] == c1.id
    assert len(img.config["history"]) == 2
    assert img.config["history"][1]["created_by"] == f"datakit commit {c2.id}"


def test_im_04_delta_applies(db: Db, tmp_path: Path) -> None:
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    layout = tmp_path / "L"
    export(db, c1.id, f"{layout}:v1")
    assert export(db, c2.id, f"{layout}:v1")[1] == f"delta from {c1.id}"
    rootfs = umoci_unpack(layout, "v1", tmp_path / "bundle")
    assert rootfs_tree(rootfs) == tree_of(c2)


@pytest.mark.slow
def test_im_05_type_changes(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    before = db.commit({"README": b"r\n", "docs/b.md": b"file\n", "docs/old/y": b"y\n"}, "b")
    c3 = db.update({"docs/b.md": None, "docs/b.md/x": b"x\n", "docs/old": b"now a file\n"}, "c3")
    assert tree_of(c3)["docs/b.md"][0] == "dir" and tree_of(c3)["docs/old"][0] == "file"

    layout = tmp_path / "L"
    export(db, before.id, f"{layout}:v1")
    assert export(db, c3.id, f"{layout}:v1")[1] == f"delta from {before.id}"
    img = read_layout(layout, "v1")
    entries = img.layer_entries(1)
    assert names(entries) == ["docs/", "docs/b.md/", "docs/b.md/x", "docs/old"]
    assert not [e for e in entries if ".wh." in e.name]
    assert rootfs_tree(umoci_unpack(layout, "v1", tmp_path / "bundle")) == tree_of(c3)

    # the same through the registry, pulled by podman
    ref = f"{registry.address}/dk/types:latest"
    push = ("push", "--db", db.address, "--to", ref, "--plain-http")
    assert run_image(*push, "--commit", before.id).one()[1] == "full"
    assert run_image(*push, "--commit", c3.id).one()[1] == f"delta from {before.id}"
    assert podman_tree(ref) == tree_of(c3)
    assert rootfs_tree(unpack_ref(ref, tmp_path / "pulled")) == tree_of(c3)


def test_im_06_deep_removal_one_whiteout(db: Db, tmp_path: Path) -> None:
    files: dict = {f"vendor/m{i // 100}/f{i}.go": b"package m\n%d\n" % i for i in range(1000)}
    files["README"] = b"r\n"
    c1 = db.commit(files, "with vendor")
    c2 = db.update({"vendor": None}, "drop vendor")
    layout = tmp_path / "L"
    export(db, c1.id, f"{layout}:v1")
    assert export(db, c2.id, f"{layout}:v1")[1] == f"delta from {c1.id}"
    img = read_layout(layout, "v1")
    assert len(img.layer_entries(0)) == 1000 + 10 + 1 + 1
    assert names(img.layer_entries(1)) == [".wh.vendor"]
    assert rootfs_tree(umoci_unpack(layout, "v1", tmp_path / "bundle")) == tree_of(c2)


def test_im_07_forbidden_names(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    bad = db.commit({"README": b"r\n", "a/.wh.b": b"cannot be in a layer\n"}, "bad")

    # into a new layout: error naming the path, nothing written
    fresh = tmp_path / "fresh"
    res = run_image(
        "export", "--db", db.address, "--commit", bad.id, "--oci-layout", f"{fresh}:v1",
        check=False,
    )  # fmt: skip
    expect_error(res, "a/.wh.b")
    assert not (fresh / "index.json").exists()
    assert not (fresh / "blobs").exists() or not any((fresh / "blobs").rglob("*[0-9a-f]"))

    # into a layout that already holds an image at the tag: left as it was
    good = db.commit({"README": b"r\n"}, "good")
    layout = tmp_path / "L"
    export(db, good.id, f"{layout}:v1")
    index = (layout / "index.json").read_bytes()
    blobs = layout_blobs(layout)
    res = run_image(
        "export", "--db", db.address, "--commit", bad.id, "--oci-layout", f"{layout}:v1",
        check=False,
    )  # fmt: skip
    expect_error(res, "a/.wh.b")
    assert (layout / "index.json").read_bytes() == index
    assert layout_blobs(layout) == blobs

    # pushed: nothing uploaded, no tag
    ref = f"{registry.address}/dk/bad:latest"
    res = run_image(
        "push", "--db", db.address, "--commit", bad.id, "--to", ref, "--plain-http", check=False
    )
    expect_error(res, "a/.wh.b")
    assert get_manifest(registry.address, "dk/bad", "latest") is None
    assert not [r for r in registry.requests() if r[0] in ("POST", "PUT", "PATCH")]

    # as a delta on top of a good image: refused too, the tag as it was
    good_ref = f"{registry.address}/dk/good:latest"
    run_image("push", "--db", db.address, "--commit", good.id, "--to", good_ref, "--plain-http")
    before = get_manifest(registry.address, "dk/good", "latest")
    assert before is not None
    later = db.update({"a/.wh.b": b"cannot be in a layer\n", "x": b"x\n"}, "bad on top")
    res = run_image(
        "push", "--db", db.address, "--commit", later.id, "--to", good_ref, "--plain-http",
        check=False,
    )  # fmt: skip
    expect_error(res, "a/.wh.b")
    after = get_manifest(registry.address, "dk/good", "latest")
    assert after is not None and after.digest == before.digest


@pytest.mark.slow
def test_im_17_opaque_option(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    c1 = db.commit({"README": b"r\n", "o/old1": b"1\n", "o/old2": b"2\n"}, "old")
    c2 = db.update({"o/old1": None, "o/old2": None, "o/new": b"new\n"}, "new")
    layout = tmp_path / "L"
    for tag, extra in (("opq", ["--opaque-threshold", "2"]), ("plain", [])):
        export(db, c1.id, f"{layout}:{tag}", *extra)
        assert export(db, c2.id, f"{layout}:{tag}", *extra)[1] == f"delta from {c1.id}"
    opq = read_layout(layout, "opq").layer_entries(1)
    plain = read_layout(layout, "plain").layer_entries(1)
    assert names(opq) == ["o/", "o/.wh..wh..opq", "o/new"]
    assert names(plain) == ["o/", "o/.wh.old1", "o/.wh.old2", "o/new"]

    want = tree_of(c2)
    for tag in ("opq", "plain"):
        assert rootfs_tree(umoci_unpack(layout, tag, tmp_path / f"bundle-{tag}")) == want
        ref = f"{registry.address}/dk/{tag}:latest"
        extra = ["--opaque-threshold", "2"] if tag == "opq" else []
        push = ("push", "--db", db.address, "--to", ref, "--plain-http", *extra)
        run_image(*push, "--commit", c1.id)
        assert run_image(*push, "--commit", c2.id).one()[1] == f"delta from {c1.id}"
        assert podman_tree(ref) == want


def test_im_07_submodule_skipped(tmp_path: Path) -> None:
    """A Git submodule entry (mode 160000) cannot be carried: a warning
    naming it, and the rest of the tree in the image."""
    repo = tmp_path / "sub.git"
    git_fast_import(
        repo,
        b"commit refs/heads/master\ncommitter t <t@example.com> 1500000000 +0000\n"
        b"data 3\nsm\n"
        b"M 100644 inline README\ndata 2\nr\n\n"
        b"M 160000 0123456789abcdef0123456789abcdef01234567 vendor/lib\n\n",
    )
    layout = tmp_path / "L"
    res = run_image(
        "export", "--db", str(repo), "--branch", "master", "--oci-layout", f"{layout}:v1"
    )
    assert res.one()[1] == "full"
    warnings = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(warnings) == 1 and "vendor/lib" in warnings[0], res.stderr
    rootfs = umoci_unpack(layout, "v1", tmp_path / "bundle")
    assert rootfs_tree(rootfs) == {"README": ("file", b"r\n"), "vendor": ("dir", b"")}


@pytest.mark.slow
def test_im_03_same_layers_over_9p_and_git(tmp_path: Path) -> None:
    """The same commits exported through a `datakit serve` process (9p) and
    straight from its Git repository give byte-identical images."""
    repo = tmp_path / "db.git"
    with served_db(repo) as db:
        c1 = db.commit(C1_FILES, "c1")
        c2 = db.update(C2_CHANGES, "c2")
        over_9p = tmp_path / "9p"
        export(db, c1.id, f"{over_9p}:v1")
        assert export(db, c2.id, f"{over_9p}:v1")[1] == f"delta from {c1.id}"
    with git_db(repo) as db:
        direct = tmp_path / "git"
        export(db, c1.id, f"{direct}:v1")
        assert export(db, c2.id, f"{direct}:v1")[1] == f"delta from {c1.id}"
        want = tree_of(db.conn.commit(c2.id))
    a, b = read_layout(over_9p, "v1"), read_layout(direct, "v1")
    assert a.manifest_digest == b.manifest_digest
    assert layout_blobs(over_9p) == layout_blobs(direct)
    assert rootfs_tree(umoci_unpack(over_9p, "v1", tmp_path / "bundle")) == want


@pytest.mark.slow
def test_im_05_type_changes_with_links(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    """Every kind into every other at one path: file, executable, symlink,
    directory; umoci and podman give the new tree."""
    before = db.commit(
        {
            "f2l": b"file\n",
            "l2f": link("f2l"),
            "l2d": link("f2l"),
            "d2l/x": b"x\n",
            "x2f": exe(b"#!/bin/sh\n"),
            "f2x": b"#!/bin/sh\n",
        },
        "before",
    )
    after = db.commit(
        {
            "f2l": link("x2f"),
            "l2f": b"now a file\n",
            "l2d/y": b"y\n",
            "d2l": link("l2f"),
            "x2f": b"#!/bin/sh\n",
            "f2x": exe(b"#!/bin/sh\n"),
        },
        "after",
    )
    layout = tmp_path / "L"
    export(db, before.id, f"{layout}:v1")
    assert export(db, after.id, f"{layout}:v1")[1] == f"delta from {before.id}"
    entries = read_layout(layout, "v1").layer_entries(1)
    assert not [e for e in entries if ".wh." in e.name], names(entries)
    assert rootfs_tree(umoci_unpack(layout, "v1", tmp_path / "bundle")) == tree_of(after)
    ref = f"{registry.address}/dk/kinds:latest"
    push = ("push", "--db", db.address, "--to", ref, "--plain-http")
    run_image(*push, "--commit", before.id)
    assert run_image(*push, "--commit", after.id).one()[1] == f"delta from {before.id}"
    assert podman_tree(ref) == tree_of(after)
