"""Bad input (issue 12): a registry that is down, answers 5xx, loses an upload
or returns a digest that does not match; a commit or branch the database does
not have. Each: one line `datakit image: ...` on stderr, exit 1, and the tag
as it was (the manifest is put last)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.imagehelpers import (
    C1_FILES,
    C2_CHANGES,
    REVISION,
    Db,
    Result,
    cli_env,
    expect_error,
    free_port,
    get_manifest,
    git_db,
    image_cmd,
    rootfs_tree,
    run_image,
    tree_of,
    unpack_ref,
    uploads,
)
from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc

REPO = "dk/site"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with git_db(tmp_path / "db.git") as d:
        yield d


def push(db: Db, commit: str, ref: str, *extra: str, check: bool = True) -> Result:
    return run_image(
        "push", "--db", db.address, "--commit", commit, "--to", ref, "--plain-http", *extra,
        check=check,
    )  # fmt: skip


def tag_digest(registry: RegistryProc) -> str | None:
    m = get_manifest(registry.address, REPO, "latest")
    return None if m is None else m.digest


def test_im_err_registry_down(db: Db) -> None:
    c1 = db.commit(C1_FILES, "c1")
    address = f"127.0.0.1:{free_port()}"
    res = push(db, c1.id, f"{address}/{REPO}:latest", check=False)
    expect_error(res, address)


def test_im_err_commit_not_in_database(db: Db, registry: RegistryProc, tmp_path: Path) -> None:
    c1 = db.commit(C1_FILES, "c1")
    ref = f"{registry.address}/{REPO}:latest"
    push(db, c1.id, ref)
    before = tag_digest(registry)
    missing = "0123456789abcdef0123456789abcdef01234567"
    seen = len(registry.requests())
    expect_error(push(db, missing, ref, check=False), missing)
    assert tag_digest(registry) == before
    assert not [r for r in registry.requests()[seen:] if r[0] in ("PUT", "POST", "PATCH")]
    # export too
    res = run_image(
        "export", "--db", db.address, "--commit", missing, "--oci-layout",
        f"{tmp_path / 'L'}:v1", check=False,
    )  # fmt: skip
    expect_error(res, missing)
    assert not (tmp_path / "L" / "index.json").exists()


def test_im_err_branch_not_in_database(db: Db, registry: RegistryProc) -> None:
    db.commit(C1_FILES, "c1")
    res = run_image(
        "push", "--db", db.address, "--branch", "nosuch", "--to",
        f"{registry.address}/{REPO}:latest", "--plain-http", check=False,
    )  # fmt: skip
    expect_error(res, "nosuch")
    assert tag_digest(registry) is None


def test_im_err_usage(db: Db, registry: RegistryProc) -> None:
    c1 = db.commit(C1_FILES, "c1")
    # no --to: a usage error (exit 2)
    res = run_image("push", "--db", db.address, "--commit", c1.id, check=False)
    assert res.returncode == 2, str(res)
    # a reference that is not one
    res = push(db, c1.id, f"{registry.address}/Not_Valid//x:latest", check=False)
    assert res.returncode in (1, 2), str(res)
    assert "Traceback" not in res.stderr
    assert tag_digest(registry) is None


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", r"/manifests/", 500),
        ("POST", r"/blobs/uploads/", 503),
        ("PUT", r"/blobs/uploads/", 500),
    ],
    ids=["manifest-500", "post-503", "blob-put-500"],
)
def test_im_err_server_error_leaves_tag(
    db: Db, registry: RegistryProc, method: str, path: str, status: int
) -> None:
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    with RegistryProxy(registry.address) as proxy:
        ref = f"{proxy.address}/{REPO}:latest"
        push(db, c1.id, ref)
        before = tag_digest(registry)
        # a client may retry a failed request a few times; it must give up at last
        proxy.fail_next(method, path, status, times=50)
        seen = len(proxy.requests)
        expect_error(push(db, c2.id, ref, check=False), str(status))
        sent = proxy.requests[seen:]
    assert tag_digest(registry) == before
    if path != r"/manifests/":
        assert uploads(sent)["manifest_put"] == 0, sent


def test_im_err_manifest_digest_mismatch(db: Db, registry: RegistryProc) -> None:
    c1 = db.commit(C1_FILES, "c1")
    with RegistryProxy(registry.address) as proxy:
        ref = f"{proxy.address}/{REPO}:latest"
        proxy.rewrite_digest_next("PUT", r"/manifests/")
        expect_error(push(db, c1.id, ref, check=False), "digest")


def test_im_err_blob_digest_mismatch_leaves_tag(db: Db, registry: RegistryProc) -> None:
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    with RegistryProxy(registry.address) as proxy:
        ref = f"{proxy.address}/{REPO}:latest"
        push(db, c1.id, ref)
        before = tag_digest(registry)
        proxy.rewrite_digest_next("PUT", r"/blobs/uploads/")
        seen = len(proxy.requests)
        expect_error(push(db, c2.id, ref, check=False), "digest")
        assert uploads(proxy.requests[seen:])["manifest_put"] == 0
    assert tag_digest(registry) == before


@pytest.mark.slow
def test_im_err_upload_lost_midway(db: Db, registry: RegistryProc, tmp_path: Path) -> None:
    """The connection drops during a blob upload: either the client recovers
    and the image is complete, or it fails with one line and the tag is as it
    was. Never a tag naming blobs that are not there."""
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    with RegistryProxy(registry.address) as proxy:
        ref = f"{proxy.address}/{REPO}:latest"
        push(db, c1.id, ref)
        before = tag_digest(registry)
        proxy.drop_next("PUT", r"/blobs/uploads/")
        res = push(db, c2.id, ref, check=False)
    direct = f"{registry.address}/{REPO}:latest"
    if res.returncode == 0:
        m = get_manifest(registry.address, REPO, "latest")
        assert m is not None and m.json["annotations"][REVISION] == c2.id
        assert rootfs_tree(unpack_ref(direct, tmp_path / "u")) == tree_of(c2)
    else:
        expect_error(res)
        assert tag_digest(registry) == before
        assert rootfs_tree(unpack_ref(direct, tmp_path / "u")) == tree_of(c1)


def test_im_err_database_unreachable(tmp_path: Path) -> None:
    port = free_port()
    res = run_image(
        "export", "--db", f"tcp://127.0.0.1:{port}", "--branch", "master", "--oci-layout",
        f"{tmp_path / 'L'}:v1", check=False,
    )  # fmt: skip
    expect_error(res, f"127.0.0.1:{port}")
    assert not (tmp_path / "L").exists()


def test_im_err_bad_layout_tag(db: Db, tmp_path: Path) -> None:
    """A layout tag outside the OCI ref.name grammar (here a space) is refused
    at the start, as push refuses such a tag (B.3)."""
    c1 = db.commit(C1_FILES, "c1")
    res = run_image(
        "export", "--db", db.address, "--commit", c1.id, "--oci-layout",
        f"{tmp_path / 'L'}:bad tag", check=False,
    )  # fmt: skip
    assert res.returncode in (1, 2), str(res)
    assert "bad tag" in res.stderr
    assert not (tmp_path / "L" / "index.json").exists()


def test_im_err_not_a_layout(db: Db, tmp_path: Path) -> None:
    c1 = db.commit(C1_FILES, "c1")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine\n")
    res = run_image(
        "export", "--db", db.address, "--commit", c1.id, "--oci-layout", f"{junk}:v1",
        check=False,
    )  # fmt: skip
    expect_error(res, str(junk))
    assert sorted(p.name for p in junk.iterdir()) == ["notes.txt"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_im_err_push_interrupted(db: Db, registry: RegistryProc, sig: int) -> None:
    """Ctrl-C (or SIGTERM) in the middle of an upload: non-zero exit, no
    traceback, and the tag still names the previous, complete image. (8 MiB
    in 64 KiB chunks: 128 PATCHes, so the signal lands mid-upload.)"""
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update({"big.bin": random.Random(7).randbytes(8 * 1024 * 1024)}, "c2")
    with RegistryProxy(registry.address) as proxy:
        ref = f"{proxy.address}/{REPO}:latest"
        push(db, c1.id, ref)
        before = tag_digest(registry)
        seen = len(proxy.requests)
        proc = subprocess.Popen(
            image_cmd("push", "--db", db.address, "--commit", c2.id, "--to", ref,
                      "--plain-http", "--chunk-size", str(64 * 1024)),
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while proxy.count("PATCH", r"/blobs/uploads/") == 0 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        sent = proxy.requests[seen:]
    assert proc.returncode != 0, (out, err)
    assert out == "" and "Traceback" not in err, (out, err)
    assert len([ln for ln in err.splitlines() if ln.strip()]) <= 1, err
    assert uploads(sent)["manifest_put"] == 0, sent
    assert tag_digest(registry) == before
