"""IM-16: `datakit image follow` pushes new heads of a branch (coalescing
bursts) and stops cleanly on SIGINT and SIGTERM, never leaving a partial
manifest behind."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.imagehelpers import (
    C1_FILES,
    REVISION,
    Db,
    cli_env,
    get_manifest,
    git_db,
    image_cmd,
    rootfs_tree,
    served_db,
    skopeo_inspect,
    tree_of,
    unpack_ref,
)
from tests.images.registryproc import RegistryProc

DIGEST_LINE = r"sha256:[0-9a-f]{64} "


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with git_db(tmp_path / "db.git") as d:
        yield d


class Follower:
    """`datakit image follow` as a child process; stdout lines collected."""

    def __init__(self, db: Db, ref: str, log: Path, *extra: str) -> None:
        self.lines: list[str] = []
        self.log = log
        self.proc = subprocess.Popen(
            image_cmd("follow", "--db", db.address, "--branch", "master", "--to", ref,
                      "--plain-http", *extra),
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait()
            msg = f"follow did not stop on {sig!r}: {self.log.read_text()}"
            raise AssertionError(msg) from exc
        self.reader.join(10)
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_for_revision(registry: str, repo: str, commit: str, follower: Follower) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = get_manifest(registry, repo, "latest")
        if m is not None and m.json.get("annotations", {}).get(REVISION) == commit:
            return
        assert follower.proc.poll() is None, (
            f"follow exited with {follower.proc.returncode}: {follower.log.read_text()}"
        )
        time.sleep(0.1)
    raise AssertionError(
        f"the tag never named {commit}; follow printed {follower.lines}; "
        f"stderr: {follower.log.read_text()}"
    )


def wait_for_lines(follower: Follower, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(follower.lines) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(follower.lines) >= n, (follower.lines, follower.log.read_text())


def complete(registry: RegistryProc, repo: str, tmp: Path) -> tuple[str, dict]:
    """The tag holds a whole image: every blob is there and umoci unpacks it."""
    ref = f"{registry.address}/{repo}:latest"
    m = get_manifest(registry.address, repo, "latest")
    assert m is not None
    info = skopeo_inspect(ref)
    assert info["Digest"] == m.digest
    tree = rootfs_tree(unpack_ref(ref, tmp))
    return m.json["annotations"][REVISION], tree


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_im_16_follow(db: Db, tmp_path: Path, registry: RegistryProc, sig: int) -> None:
    follow_three_commits(db, tmp_path, registry, sig)


@pytest.mark.slow
def test_im_16_follow_over_9p(tmp_path: Path, registry: RegistryProc) -> None:
    """The same against a `datakit serve` process (the follower's watch is a
    9p one there)."""
    with served_db(tmp_path / "served.git") as db:
        follow_three_commits(db, tmp_path, registry, signal.SIGTERM)


def follow_three_commits(db: Db, tmp_path: Path, registry: RegistryProc, sig: int) -> None:
    c0 = db.commit(C1_FILES, "c0")
    repo = "dk/follow"
    follower = Follower(db, f"{registry.address}/{repo}:latest", tmp_path / "follow.log")
    try:
        wait_for_revision(registry.address, repo, c0.id, follower)
        wait_for_lines(follower, 1)
        before = len(follower.lines)
        # three commits in quick succession
        commits = [db.update({"docs/n.md": b"version %d\n" % i}, f"n{i}") for i in range(3)]
        wait_for_revision(registry.address, repo, commits[-1].id, follower)
        time.sleep(1)  # a late extra push would show up here
        pushes = follower.lines[before:]
        assert 1 <= len(pushes) <= 3, pushes
        # each push a delta of a new head: nothing pushed twice
        assert all(line.split(" ", 1)[1].startswith("delta from ") for line in pushes), pushes
        assert len({line.split(" ", 1)[0] for line in pushes}) == len(pushes), pushes
        rc = follower.stop(sig)
    finally:
        follower.close()
    assert rc == 0, follower.log.read_text()
    for line in follower.lines:
        digest, _, how = line.partition(" ")
        assert digest.startswith("sha256:") and len(digest) == 71, line
        assert how, line
    revision, tree = complete(registry, repo, tmp_path / "u")
    assert revision == commits[-1].id
    assert tree == tree_of(commits[-1])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_im_16_follow_stopped_mid_push(
    db: Db, tmp_path: Path, registry: RegistryProc, sig: int
) -> None:
    """Stopped right after a commit, probably while pushing it: the tag holds
    either the previous image or the new one, complete."""
    c0 = db.commit(C1_FILES, "c0")
    repo = "dk/stopped"
    follower = Follower(
        db, f"{registry.address}/{repo}:latest", tmp_path / "follow.log",
        "--chunk-size", str(64 * 1024),
    )  # fmt: skip
    try:
        wait_for_revision(registry.address, repo, c0.id, follower)
        seen = len(registry.requests())
        # 8 MiB of noise in 64 KiB chunks: the signal lands mid-upload
        c1 = db.update({"big.bin": random.Random(16).randbytes(8 * 1024 * 1024)}, "c1")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [
            r for r in registry.requests()[seen:] if r[0] == "PATCH"
        ]:
            time.sleep(0.01)
        rc = follower.stop(sig)
    finally:
        follower.close()
    assert rc == 0, follower.log.read_text()
    revision, tree = complete(registry, repo, tmp_path / "u")
    assert revision in (c0.id, c1.id)
    assert tree == tree_of(db.conn.commit(revision))


@pytest.mark.slow
def test_im_16_follow_keeps_working(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    """At run time a failure is a log line and the follower carries on: a
    registry answering 5xx is retried; a commit that cannot be an image (a
    `.wh.` name) is reported and skipped until the branch moves on."""
    from tests.images.proxy import RegistryProxy

    c0 = db.commit(C1_FILES, "c0")
    repo = "dk/keep"
    log = tmp_path / "follow.log"
    with RegistryProxy(registry.address) as proxy:
        follower = Follower(db, f"{proxy.address}/{repo}:latest", log)
        try:
            wait_for_revision(registry.address, repo, c0.id, follower)
            proxy.fail_next("PUT", r"/manifests/", 500, times=2)
            c1 = db.update({"docs/n.md": b"one\n"}, "c1")
            wait_for_revision(registry.address, repo, c1.id, follower)
            assert proxy.count("PUT", r"/manifests/", 500) == 2
            assert "500" in log.read_text()

            bad = db.update({"a/.wh.b": b"x\n"}, "bad")
            deadline = time.monotonic() + 60
            while bad.id not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "a/.wh.b" in log.read_text(), log.read_text()
            m = get_manifest(registry.address, repo, "latest")
            assert m is not None and m.json["annotations"][REVISION] == c1.id

            c3 = db.update({"a": None, "docs/n.md": b"three\n"}, "c3")
            wait_for_revision(registry.address, repo, c3.id, follower)
            assert follower.proc.poll() is None
            rc = follower.stop(signal.SIGTERM)
        finally:
            follower.close()
    assert rc == 0, log.read_text()
    revision, tree = complete(registry, repo, tmp_path / "u")
    assert revision == c3.id
    assert tree == tree_of(c3)


@pytest.mark.slow
def test_im_16_follow_waits_for_the_registry(
    db: Db, tmp_path: Path, registry: RegistryProc
) -> None:
    """Started while the registry is unreachable (the proxy's upstream is a
    closed port: every answer is a 502), the follower logs, retries and
    pushes once the registry is back."""
    from tests.images.imagehelpers import free_port
    from tests.images.proxy import RegistryProxy

    c0 = db.commit(C1_FILES, "c0")
    repo = "dk/late"
    log = tmp_path / "follow.log"
    with RegistryProxy(f"127.0.0.1:{free_port()}") as proxy:
        follower = Follower(db, f"{proxy.address}/{repo}:latest", log)
        try:
            deadline = time.monotonic() + 60
            while "retrying" not in log.read_text() and time.monotonic() < deadline:
                assert follower.proc.poll() is None, log.read_text()
                time.sleep(0.1)
            assert "retrying" in log.read_text(), log.read_text()
            assert follower.lines == []
            proxy.upstream = registry.address  # the registry is back
            wait_for_revision(registry.address, repo, c0.id, follower)
            rc = follower.stop(signal.SIGINT)
        finally:
            follower.close()
    assert rc == 0, log.read_text()
    revision, tree = complete(registry, repo, tmp_path / "u")
    assert revision == c0.id and tree == tree_of(c0)


@pytest.mark.slow
def test_im_16_follow_coalesces_a_burst(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    """Ten commits land while a slow push (8 MiB in 64 KiB chunks) runs:
    the follower then pushes the newest head, not each commit."""
    c0 = db.commit(C1_FILES, "c0")
    repo = "dk/burst"
    follower = Follower(
        db, f"{registry.address}/{repo}:latest", tmp_path / "follow.log",
        "--chunk-size", str(64 * 1024),
    )  # fmt: skip
    try:
        wait_for_revision(registry.address, repo, c0.id, follower)
        wait_for_lines(follower, 1)
        seen = len(registry.requests())
        db.update({"big.bin": random.Random(5).randbytes(8 * 1024 * 1024)}, "big")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [
            r for r in registry.requests()[seen:] if r[0] == "PATCH"
        ]:
            time.sleep(0.01)
        master = db.conn.branch("master")
        commits = []
        for i in range(10):  # straight transactions: the burst takes a moment only
            with master.transaction() as t:
                t.create_or_replace_file("n", b"%d\n" % i)
                t.commit(f"n{i}")
            head = master.head()
            assert head is not None
            commits.append(head)
        wait_for_revision(registry.address, repo, commits[-1].id, follower)
        time.sleep(1)
        pushes = follower.lines[1:]
        assert 2 <= len(pushes) <= 3, pushes
        rc = follower.stop(signal.SIGINT)
    finally:
        follower.close()
    assert rc == 0, follower.log.read_text()
    revision, tree = complete(registry, repo, tmp_path / "u")
    assert revision == commits[-1].id and tree == tree_of(commits[-1])
