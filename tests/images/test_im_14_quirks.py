"""IM-14: Debian's registry answers a single POST with 202 and a Location
that already carries a query; big layers go up in chunks (`--chunk-size`
small here, so a few MiB are several chunks); a 416 or a lost chunk makes
the client read the upload's offset back and carry on."""

from __future__ import annotations

import os
import random
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.imagehelpers import (
    Db,
    cli_env,
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

CHUNK = 1024 * 1024
BIG = random.Random(14).randbytes(3 * CHUNK + 12345)  # incompressible: 4 chunks


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with git_db(tmp_path / "db.git") as d:
        yield d


def test_im_14_post_202_and_location_with_query(db: Db, registry: RegistryProc) -> None:
    c1 = db.commit({"README": b"r\n", "a/b": b"b\n"}, "c1")
    ref = f"{registry.address}/dk/site:latest"
    digest, how = run_image(
        "push", "--db", db.address, "--commit", c1.id, "--to", ref, "--plain-http"
    ).one()
    assert how == "full"
    seen = registry.requests()
    posts = [r for r in seen if r[0] == "POST" and "/blobs/uploads/" in r[1]]
    puts = [r for r in seen if r[0] == "PUT" and "/blobs/uploads/" in r[1]]
    assert posts and all(status == 202 for _m, _p, status in posts), seen
    # the digest joined to the Location's own query with &
    assert len(puts) == 2, seen  # layer and config
    for _m, path, status in puts:
        assert status == 201, seen
        assert "?_state=" in path, seen
        assert "&digest=sha256%3A" in path or "&digest=sha256:" in path, seen
    remote = get_manifest(registry.address, "dk/site", "latest")
    assert remote is not None and remote.digest == digest


def chunks_of_layer(registry: RegistryProc) -> int:
    remote = get_manifest(registry.address, "dk/big", "latest")
    assert remote is not None
    return -(-int(remote.json["layers"][0]["size"]) // CHUNK)


def resumed_in_place(sent: list[tuple[str, str, int]], patches: int) -> None:
    """One upload session per blob (layer and config: the session was
    resumed, not started over) and exactly `patches` PATCHes."""
    counts = uploads(sent)
    assert counts["post"] == 2, sent
    assert counts["patch"] == patches, sent


def push_big(db: Db, proxy: RegistryProxy) -> tuple[str, str, str]:
    c1 = db.commit({"README": b"r\n", "data/big.bin": BIG}, "big")
    ref = f"{proxy.address}/dk/big:latest"
    digest, how = run_image(
        "push", "--db", db.address, "--commit", c1.id, "--to", ref, "--plain-http",
        "--chunk-size", str(CHUNK),
    ).one()  # fmt: skip
    return c1.id, digest, how


@pytest.mark.slow
def test_im_14_chunked_upload(db: Db, registry: RegistryProc, tmp_path: Path) -> None:
    with RegistryProxy(registry.address) as proxy:
        commit, digest, how = push_big(db, proxy)
        counts = uploads(proxy.requests)
    assert how == "full"
    assert counts["patch"] == chunks_of_layer(registry) >= 3, proxy.requests
    remote = get_manifest(registry.address, "dk/big", "latest")
    assert remote is not None and remote.digest == digest
    got = rootfs_tree(unpack_ref(f"{registry.address}/dk/big:latest", tmp_path / "u"))
    assert got == tree_of(db.conn.commit(commit))


@pytest.mark.slow
def test_im_14_chunk_416_resumes(db: Db, registry: RegistryProc, tmp_path: Path) -> None:
    with RegistryProxy(registry.address) as proxy:
        # the second chunk is refused: the registry holds one chunk
        proxy.fail_next("PATCH", r"/blobs/uploads/", 416, after=1)
        commit, digest, _how = push_big(db, proxy)
        sent = list(proxy.requests)
    patches = [r for r in sent if r[0] == "PATCH"]
    assert [r[2] for r in patches[:2]] == [202, 416], sent
    # the client asked the registry where the upload stands, and went on
    # from there: one chunk more than without the 416
    assert [r for r in sent if r[0] == "GET" and "/blobs/uploads/" in r[1]], sent
    resumed_in_place(sent, chunks_of_layer(registry) + 1)
    remote = get_manifest(registry.address, "dk/big", "latest")
    assert remote is not None and remote.digest == digest
    got = rootfs_tree(unpack_ref(f"{registry.address}/dk/big:latest", tmp_path / "u"))
    assert got == tree_of(db.conn.commit(commit))


@pytest.mark.slow
@pytest.mark.parametrize("lost", ["request", "answer"])
def test_im_14_lost_chunk_resumes(
    db: Db, registry: RegistryProc, tmp_path: Path, lost: str
) -> None:
    """A chunk lost on the way (the registry never got it) or its answer lost
    (the registry has it; the client does not know): the client reads the
    offset back and sends what is missing, and the blob is whole."""
    with RegistryProxy(registry.address) as proxy:
        if lost == "request":
            proxy.drop_next("PATCH", r"/blobs/uploads/", after=1)
        else:
            proxy.drop_answer_next("PATCH", r"/blobs/uploads/", after=1)
        commit, digest, _how = push_big(db, proxy)
        sent = list(proxy.requests)
    assert [r for r in sent if r[0] == "GET" and "/blobs/uploads/" in r[1]], sent
    if lost == "request":
        resumed_in_place(sent, chunks_of_layer(registry) + 1)
    else:
        # Distribution refuses the stale Location (its _state names the old
        # offset) and cancels the session: starting over is all a client can do.
        assert uploads(sent)["post"] in (2, 3), sent
    remote = get_manifest(registry.address, "dk/big", "latest")
    assert remote is not None and remote.digest == digest
    got = rootfs_tree(unpack_ref(f"{registry.address}/dk/big:latest", tmp_path / "u"))
    assert got == tree_of(db.conn.commit(commit))


def read_pty_until_exit(proc: subprocess.Popen[str], master: int) -> bytes:
    """Everything the child writes to the terminal, until it is gone."""
    out = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no one holds the terminal any more
                chunk = b""
            if chunk:
                out += chunk
                continue
            break
        if proc.poll() is not None:
            break
    proc.wait(60)
    return bytes(out)


@pytest.mark.slow
def test_im_14_progress_on_a_terminal_only(db: Db, registry: RegistryProc) -> None:
    """Issue 12: a progress bar on uploads of more than a few MiB when stderr
    is a terminal; nothing on stderr when it is not."""
    c1 = db.commit({"big.bin": random.Random(3).randbytes(8 * CHUNK)}, "big")
    args = ("push", "--db", db.address, "--commit", c1.id, "--plain-http")
    res = run_image(*args, "--to", f"{registry.address}/dk/quiet:latest")
    assert res.one()[1] == "full"
    assert res.stderr == "", res.stderr

    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            image_cmd(*args, "--to", f"{registry.address}/dk/tty:latest"),
            env=cli_env(), stdout=subprocess.PIPE, stderr=slave, text=True,
        )  # fmt: skip
        os.close(slave)
        shown = read_pty_until_exit(proc, master)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.stdout.close()
    finally:
        os.close(master)
    assert proc.returncode == 0, shown
    assert out.endswith(" full\n") and out.count("\n") == 1, out
    assert b"\r[#" in shown and b"MiB" in shown, shown


@pytest.mark.slow
def test_im_14_64mib_file_default_chunks(db: Db, registry: RegistryProc, tmp_path: Path) -> None:
    """IM-14 as the spec words it: a file of more than 64 MiB goes up in
    chunks of the default size (64 MiB: two PATCHes), with a 416 on the
    second one, and the image is whole."""
    big = random.Random(64).randbytes(64 * CHUNK + 4321)
    c1 = db.commit({"big.bin": big}, "64 MiB")
    with RegistryProxy(registry.address) as proxy:
        proxy.fail_next("PATCH", r"/blobs/uploads/", 416, after=1)
        ref = f"{proxy.address}/dk/huge:latest"
        digest, how = run_image(
            "push", "--db", db.address, "--commit", c1.id, "--to", ref, "--plain-http"
        ).one()
        sent = list(proxy.requests)
    assert how == "full"
    assert [r[2] for r in sent if r[0] == "PATCH"] == [202, 416, 202], sent
    assert uploads(sent)["post"] == 2, sent
    remote = get_manifest(registry.address, "dk/huge", "latest")
    assert remote is not None and remote.digest == digest
    rootfs = unpack_ref(f"{registry.address}/dk/huge:latest", tmp_path / "u")
    assert (rootfs / "big.bin").read_bytes() == big
