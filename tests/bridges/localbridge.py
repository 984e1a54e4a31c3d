"""Helpers for the local-bridge scenarios (BR-21..BR-25): real `datakit
serve` processes, real repositories made with `git`, and the bridge run as
its own process exactly as a user runs it."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from datakit.client import AGAIN, Commit, Connection, Tree, connect
from tests.gitrepo import git

BRANCH = "github-metadata"


def make_repo(path: Path, *, bare: bool = False) -> Path:
    """A repository with a work tree (or bare), branches master and feature/x."""
    git(None, "init", "-q", "-b", "master", str(path))
    git(path, "commit", "-q", "--allow-empty", "-m", "first")
    git(path, "branch", "feature/x")
    git(path, "commit", "-q", "--allow-empty", "-m", "second")
    if bare:
        bare_path = path.with_name(path.name + ".git")
        git(None, "clone", "-q", "--bare", str(path), str(bare_path))
        return bare_path
    return path


def sha(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", ref)


def commit(repo: Path, message: str) -> str:
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return sha(repo, "HEAD")


class Bridge:
    """`python -m datakit bridge local ARGS` with stderr in a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        self._log: IO[bytes] = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "datakit", "bridge", "local", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()


@contextmanager
def bridge(*args: str, log: Path) -> Iterator[Bridge]:
    b = Bridge(list(args), log)
    try:
        yield b
    finally:
        b.stop()


def wait_for_tree(
    conn: Connection, check: Callable[[Commit, Tree], bool], timeout: float = 10
) -> Commit:
    """The first head of github-metadata for which ``check`` holds."""

    def on_head(head: Commit | None) -> object:
        if head is not None and check(head, head.tree()):
            return head
        return AGAIN

    result = conn.branch(BRANCH).wait_for_head(on_head, timeout=timeout)
    if not isinstance(result, Commit):
        head = conn.branch(BRANCH).head()
        raise AssertionError(
            f"github-metadata never got there; head {head and head.id}: "
            f"{head and head.message!r}, files {head and files(head.tree())}"
        )
    return result


def files(tree: Tree, path: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file of a tree: path -> content."""
    out: dict[str, bytes] = {}
    for name in tree.read_dir(path):
        child = (*path, name)
        st = tree.stat(child)
        assert st is not None
        if st.kind.value == "dir":
            out.update(files(tree, child))
        else:
            out["/".join(child)] = tree.read_file(child)
    return out


def head_of(tree: Tree, path: str) -> str | None:
    try:
        return tree.read_file(path).decode()
    except Exception:
        return None


def fingerprint(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below ``root``: kind, mode, size, mtime and content hash.
    Equal fingerprints: nothing was created, removed, written or touched."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = ""
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def readonly(root: Path) -> None:
    subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)


def writable(root: Path) -> None:
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)


@contextmanager
def readonly_bind_mount(src: Path, dst: Path) -> Iterator[Path | None]:
    """``src`` mounted read-only at ``dst``; None where mounting is not allowed."""
    dst.mkdir()
    done = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(src), str(dst)], capture_output=True, check=False
    )
    if done.returncode != 0:
        yield None
        return
    # Older mounts ignore ro on the first bind: make sure.
    subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], capture_output=True, check=False)
    try:
        yield dst
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(dst)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)


@contextmanager
def unix_server(socket_path: Path, *args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`datakit serve` on a Unix socket (the address survives a restart)."""
    command = [sys.executable, "-m", "datakit", "serve"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*command, "--listen-9p", f"unix://{socket_path}", *args],
            stderr=out,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connect(f"unix://{socket_path}").close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"datakit serve did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(params=["memory", "git"])
def server_port(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """A real `datakit serve` (in memory, or `--git`) on a TCP port."""
    from tests.operations.procs import datakit_process

    args = [] if request.param == "memory" else ["--git", str(tmp_path / "db.git")]
    with datakit_process(*args) as (port, _metrics, _proc):
        yield port


@pytest.fixture
def client(server_port: int) -> Iterator[Connection]:
    with connect(f"tcp://127.0.0.1:{server_port}") as conn:
        yield conn
