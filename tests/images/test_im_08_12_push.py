"""IM-8..IM-12 and IM-19: `datakit image push` to Debian's registry, the
database served by a real `datakit serve --git` process (IM-8..IM-10) or a
Git repository opened by the CLI itself. What was uploaded is counted with
the recording proxy; images are checked with skopeo, umoci and podman."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.imagehelpers import (
    C1_FILES,
    C2_CHANGES,
    DK,
    REVISION,
    Db,
    get_manifest,
    git_db,
    layout_to_registry,
    make_layout,
    podman_tree,
    rootfs_tree,
    run_image,
    served_db,
    skopeo_inspect,
    tree_of,
    unpack_ref,
    uploads,
    with_dirs,
)
from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with git_db(tmp_path / "db.git") as d:
        yield d


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Db]:
    with served_db(tmp_path / "served.git") as d:
        yield d


def push(db: Db, commit: str, ref: str, *extra: str) -> tuple[str, str]:
    return run_image(
        "push", "--db", db.address, "--commit", commit, "--to", ref, "--plain-http", *extra
    ).one()


def layer_digests(ref: str) -> list[str]:
    return list(skopeo_inspect(ref)["Layers"])


@pytest.mark.slow
def test_im_08_push_full(served: Db, tmp_path: Path, registry: RegistryProc) -> None:
    c1 = served.commit(C1_FILES, "c1")
    ref = f"{registry.address}/dk/site:latest"
    digest, how = push(served, c1.id, ref)
    assert how == "full"
    info = skopeo_inspect(ref)
    assert len(info["Layers"]) == 1
    assert info["Digest"] == digest
    remote = get_manifest(registry.address, "dk/site", "latest")
    assert remote is not None
    assert remote.digest == digest
    assert remote.json["annotations"][REVISION] == c1.id
    assert podman_tree(ref) == tree_of(c1)
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u")) == tree_of(c1)


@pytest.mark.slow
def test_im_09_push_delta(served: Db, tmp_path: Path, registry: RegistryProc) -> None:
    c1 = served.commit(C1_FILES, "c1")
    c2 = served.update(C2_CHANGES, "c2")
    with RegistryProxy(registry.address) as proxy:
        ref = f"{proxy.address}/dk/site:latest"
        push(served, c1.id, ref)
        first = layer_digests(ref)
        seen = len(proxy.requests)
        digest, how = push(served, c2.id, ref)
        assert how == f"delta from {c1.id}"
        sent = proxy.requests[seen:]
    layers = layer_digests(f"{registry.address}/dk/site:latest")
    assert len(layers) == 2 and layers[0] == first[0]
    counts = uploads(sent)
    # the new layer and the new config; the first layer is not sent again
    assert counts["blob_put"] == 2, sent
    assert counts["manifest_put"] == 1, sent
    assert counts["patch"] == 0, sent
    assert not [r for r in sent if r[0] == "PUT" and first[0] in r[1]], sent
    remote = get_manifest(registry.address, "dk/site", "latest")
    assert remote is not None and remote.digest == digest
    assert rootfs_tree(unpack_ref(f"{registry.address}/dk/site:latest", tmp_path / "u")) == (
        tree_of(c2)
    )


@pytest.mark.slow
def test_im_10_up_to_date(served: Db, registry: RegistryProc) -> None:
    c1 = served.commit(C1_FILES, "c1")
    c2 = served.update(C2_CHANGES, "c2")
    direct = f"{registry.address}/dk/site:latest"
    with RegistryProxy(registry.address) as proxy:
        ref = f"{proxy.address}/dk/site:latest"
        push(served, c1.id, ref)
        d2, _ = push(served, c2.id, ref)
        layers = layer_digests(direct)

        seen = len(proxy.requests)
        digest, how = push(served, c2.id, ref)
        assert (digest, how) == (d2, "up to date")
        sent = proxy.requests[seen:]
        assert not [r for r in sent if r[0] in ("POST", "PUT", "PATCH", "DELETE")], sent

        # a new commit with the same tree: no new layer
        same = served.commit(
            {p: e for p, e in tree_of(c2).items() if e[0] != "dir"}, "same tree again"
        )
        assert same.tree_id == c2.tree_id and same.id != c2.id
        seen = len(proxy.requests)
        _digest, how = push(served, same.id, ref)
        assert how in ("up to date", "re-tagged"), how
        sent = proxy.requests[seen:]
    assert layer_digests(direct) == layers
    assert not [r for r in sent if r[0] == "PUT" and any(d in r[1] for d in layers)], sent
    assert not [r for r in sent if r[0] == "PATCH"], sent
    remote = get_manifest(registry.address, "dk/site", "latest")
    assert remote is not None
    if how == "re-tagged":  # a new manifest naming the new commit, same layers
        assert remote.json["annotations"][REVISION] == same.id
        assert uploads(sent)["manifest_put"] == 1, sent
    else:
        assert remote.digest == d2


@pytest.mark.slow
def test_im_11_foreign_tag_is_replaced_by_full(
    db: Db, tmp_path: Path, registry: RegistryProc
) -> None:
    c1 = db.commit(C1_FILES, "c1")
    ref = f"{registry.address}/dk/site:latest"

    # someone else's image (made by hand, copied in with skopeo)
    layout = tmp_path / "foreign"
    make_layout(layout, "x", [with_dirs({"etc/hostname": b"elsewhere\n"})])
    layout_to_registry(layout, "x", ref)
    digest, how = push(db, c1.id, ref)
    assert how.startswith("full (") and how.endswith(")") and len(how) > len("full ()"), how
    info = skopeo_inspect(ref)
    assert info["Digest"] == digest and len(info["Layers"]) == 1
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u1")) == tree_of(c1)

    # an image of ours whose commit this database does not have
    with git_db(tmp_path / "other.git") as other:
        o1 = other.commit({"other": b"from another database\n"}, "other")
        push(other, o1.id, ref)
    digest, how = push(db, c1.id, ref)
    assert how.startswith("full (") and len(how) > len("full ()"), how
    assert len(layer_digests(ref)) == 1
    manifest = get_manifest(registry.address, "dk/site", "latest")
    assert manifest is not None and manifest.digest == digest
    assert manifest.json["annotations"][REVISION] == c1.id
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u2")) == tree_of(c1)

    # ours, made with another prefix: full too
    c2 = db.update(C2_CHANGES, "c2")
    push(db, c1.id, ref, "--prefix", "/srv")
    _digest, how = push(db, c2.id, ref)
    assert how.startswith("full ("), how
    assert len(layer_digests(ref)) == 1
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u3")) == tree_of(c2)


@pytest.mark.slow
def test_im_12_layer_cap(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    ref = f"{registry.address}/dk/capped:latest"
    commits = [db.commit(C1_FILES, "c1")]
    for i in range(2, 5):
        commits.append(db.update({f"docs/n{i}.md": b"note %d\n" % i}, f"c{i}"))
    counts, hows = [], []
    for i, c in enumerate(commits):
        _digest, how = push(db, c.id, ref, "--max-layers", "3")
        hows.append(how)
        counts.append(len(layer_digests(ref)))
        assert rootfs_tree(unpack_ref(ref, tmp_path / f"u{i}")) == tree_of(c)
    assert counts == [1, 2, 3, 1], (counts, hows)
    assert hows[0] == "full"
    assert hows[1] == f"delta from {commits[0].id}"
    assert hows[2] == f"delta from {commits[1].id}"
    assert hows[3].startswith("full"), hows
    manifest = get_manifest(registry.address, "dk/capped", "latest")
    assert manifest is not None
    layer = manifest.json["layers"][0]
    assert layer["annotations"][DK + "commit"] == commits[3].id
    assert DK + "from" not in layer["annotations"]


@pytest.mark.slow
def test_im_19_edited_file_reaches_the_image(
    db: Db, tmp_path: Path, registry: RegistryProc
) -> None:
    """kontext never re-uploads an edited file; a shorter new content also
    shows that nothing of the old tail survives."""
    ref = f"{registry.address}/dk/edit:latest"
    c1 = db.commit({"config.txt": b"port = 8080 # a long first version\n", "run": b"x\n"}, "c1")
    push(db, c1.id, ref)
    c2 = db.update({"config.txt": b"port = 9090\n"}, "c2")
    assert push(db, c2.id, ref)[1] == f"delta from {c1.id}"
    got = rootfs_tree(unpack_ref(ref, tmp_path / "u1"))
    assert got["config.txt"] == ("file", b"port = 9090\n")
    assert got == tree_of(c2)
    # a mode-only change (the executable bit) reaches the image too
    c3 = db.update({"run": ("exec", b"x\n")}, "c3")
    # --branch: the head, here c3
    res = run_image("push", "--db", db.address, "--branch", "master", "--to", ref, "--plain-http")
    assert res.one()[1] == f"delta from {c2.id}"
    got = rootfs_tree(unpack_ref(ref, tmp_path / "u2"))
    assert got["run"] == ("exec", b"x\n")
    assert got == tree_of(c3)


def config_of(registry: RegistryProc, repository: str) -> dict:
    import json
    import urllib.request

    m = get_manifest(registry.address, repository, "latest")
    assert m is not None
    url = f"http://{registry.address}/v2/{repository}/blobs/{m.json['config']['digest']}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def test_im_11_other_platform_is_not_reused(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    """The tag holds our image for another platform: the image pushed for
    --platform linux/arm64 must say arm64 (C.3), however it is built."""
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    ref = f"{registry.address}/dk/plat:latest"
    push(db, c1.id, ref)
    assert config_of(registry, "dk/plat")["architecture"] == "amd64"
    _digest, how = push(db, c1.id, ref, "--platform", "linux/arm64")
    assert how != "up to date", how
    assert config_of(registry, "dk/plat")["architecture"] == "arm64"
    push(db, c2.id, ref, "--platform", "linux/arm64")
    assert config_of(registry, "dk/plat")["architecture"] == "arm64"
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u")) == tree_of(c2)


def test_im_19_empty_tree_is_an_image(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    """kontext never creates the tag for an empty directory (A.5 item 10);
    an empty tree is an image here, and emptying a tree is a delta."""
    ref = f"{registry.address}/dk/empty:latest"
    with db.conn.branch("master").transaction() as t:
        t.commit("nothing yet")
    empty = db.conn.branch("master").head()
    assert empty is not None and tree_of(empty) == {}
    _digest, how = push(db, empty.id, ref)
    assert how == "full"
    assert len(layer_digests(ref)) == 1
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u0")) == {}
    c1 = db.commit(C1_FILES, "c1")
    assert push(db, c1.id, ref)[1] == f"delta from {empty.id}"
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u1")) == tree_of(c1)
    gone = db.commit({}, "emptied")
    assert push(db, gone.id, ref)[1] == f"delta from {c1.id}"
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u2")) == {}


def test_im_10_retagged_image_is_continued(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    """A re-tagged image (a new commit with the same tree: a merge, a revert
    of a revert) is ours and its commit is known: the next commit is a delta
    on top of it, not a full image."""
    ref = f"{registry.address}/dk/retag:latest"
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    push(db, c1.id, ref)
    push(db, c2.id, ref)
    same = db.commit({p: e for p, e in tree_of(c2).items() if e[0] != "dir"}, "same tree")
    assert push(db, same.id, ref)[1] in ("re-tagged", "up to date")
    c3 = db.update({"docs/c.md": b"c\n"}, "c3")
    _digest, how = push(db, c3.id, ref)
    assert how in (f"delta from {same.id}", f"delta from {c2.id}"), how
    assert len(layer_digests(ref)) == 3
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u")) == tree_of(c3)


@pytest.mark.slow
def test_im_04_delta_between_any_two_commits(
    db: Db, tmp_path: Path, registry: RegistryProc
) -> None:
    """A delta needs two trees, not a line of history: back to an older
    commit, then over to an unrelated branch; podman and umoci agree."""
    ref = f"{registry.address}/dk/jumps:latest"
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    push(db, c1.id, ref)
    push(db, c2.id, ref)
    assert push(db, c1.id, ref)[1] == f"delta from {c2.id}"
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u1")) == tree_of(c1)
    assert podman_tree(ref) == tree_of(c1)
    other = db.commit({"only/here": b"another line of history\n"}, "other", branch="other")
    assert push(db, other.id, ref)[1] == f"delta from {c1.id}"
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u2")) == tree_of(other)
    assert podman_tree(ref) == tree_of(other)


def test_im_11_missing_config_is_replaced_by_full(
    db: Db, tmp_path: Path, registry: RegistryProc
) -> None:
    """The tag's config blob is gone (deleted, garbage collected): like a
    missing layer, the image cannot be continued, so the push is full."""
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    ref = f"{registry.address}/dk/site:latest"
    push(db, c1.id, ref)
    found = get_manifest(registry.address, "dk/site", "latest")
    assert found is not None
    config = found.json["config"]["digest"]
    request = urllib.request.Request(
        f"http://{registry.address}/v2/dk/site/blobs/{config}", method="DELETE"
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 202
    _digest, how = push(db, c2.id, ref)
    assert how == f"full (the config {config} of the tag's image is missing)", how
    assert rootfs_tree(unpack_ref(ref, tmp_path / "u")) == tree_of(c2)
