"""--auto-push replicates branch updates to a bare repository and to `git daemon`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.client.ninep_client import Client
from tests.operations.procs import datakit_process, wait_for_port
from tests.operations.test_metrics import commit_file, scrape, value
from tests.ports import free_port


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def remote_heads(bare: Path) -> dict[str, str]:
    out = git(
        "--git-dir",
        str(bare),
        "for-each-ref",
        "--format=%(refname:short) %(objectname)",
        "refs/heads",
    )
    return dict(line.split() for line in out.splitlines())


def wait_until(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the push")
        time.sleep(0.1)


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    base = tmp_path / "served"
    base.mkdir()
    bare = base / "mirror.git"
    git("init", "--bare", "-q", str(bare))
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield f"git://127.0.0.1:{port}/mirror.git", bare
    finally:
        proc.terminate()
        proc.wait(10)


def test_updates_are_pushed_to_a_bare_repository(tmp_path: Path) -> None:
    bare = tmp_path / "mirror.git"
    git("init", "--bare", "-q", str(bare))
    repo = tmp_path / "db"
    with datakit_process("--git", str(repo), "--auto-push", str(bare)) as (port, mport, _):
        before = scrape(mport)
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            commit_file(c, "master", "a", b"1")
            commit_file(c, "dev", "b", b"2")
            master = c.read("branch/master/head").strip().decode()
            dev = c.read("branch/dev/head").strip().decode()
            wait_until(lambda: remote_heads(bare) == {"master": master, "dev": dev})

            def pushes() -> float:
                return value(scrape(mport), "DataKit_git_push_duration_seconds_count") - value(
                    before, "DataKit_git_push_duration_seconds_count"
                )

            # The remote's refs move before `git push` exits and its duration is recorded.
            wait_until(lambda: pushes() >= 1)
            assert pushes() <= 2  # two quick commits are coalesced into one or two pushes
            c.remove("branch/dev")
            wait_until(lambda: remote_heads(bare) == {"master": master})
    git("--git-dir", str(bare), "fsck", "--strict")


def test_updates_are_pushed_to_git_daemon(tmp_path: Path, git_daemon: tuple[str, Path]) -> None:
    url, bare = git_daemon
    with datakit_process("--git", str(tmp_path / "db"), "--auto-push", url) as (port, _, _):
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            for i in range(3):
                commit_file(c, "master", f"f{i}", b"data")
            head = c.read("branch/master/head").strip().decode()
        wait_until(lambda: remote_heads(bare).get("master") == head)
    assert git("--git-dir", str(bare), "rev-list", "--count", "master") == "3"


def test_unreachable_remote_does_not_block_commits(tmp_path: Path) -> None:
    url = f"git://127.0.0.1:{free_port()}/nothing.git"
    with datakit_process("--git", str(tmp_path / "db"), "--auto-push", url) as (port, mport, _):
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            start = time.monotonic()
            for i in range(5):
                commit_file(c, "master", f"f{i}", b"data")
            assert time.monotonic() - start < 10
        wait_until(lambda: value(scrape(mport), "datakit_pushes_total", outcome="error") >= 1)


def test_a_hung_remote_times_out_and_its_password_is_never_logged(tmp_path: Path) -> None:
    """A remote that accepts and never answers: each push is stopped after
    --auto-push-timeout and retried, commits go on meanwhile, and the
    password in the URL appears nowhere in the log."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    url = f"http://user:s3cr3t@127.0.0.1:{silent.getsockname()[1]}/mirror.git"
    log = tmp_path / "log"
    with (
        silent,
        open(log, "wb") as err,
        datakit_process(
            "-v", "--git", str(tmp_path / "db"), "--auto-push", url,
            "--auto-push-timeout", "1", stderr=err,
        ) as (port, mport, _),
    ):  # fmt: skip
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            commit_file(c, "master", "a", b"1")
            # The first push hangs, is stopped, fails; more are tried. Each
            # stopped push leaves nothing behind (git's own helper
            # processes, git remote-http, went on hanging before).
            wait_until(
                lambda: value(scrape(mport), "datakit_pushes_total", outcome="error") >= 3,
                timeout=30,
            )
            helpers = _processes_naming(str(silent.getsockname()[1]))
            assert len(helpers) <= 3, helpers  # at most the push now running
            start = time.monotonic()
            commit_file(c, "master", "b", b"2")
            assert time.monotonic() - start < 10
    text = log.read_text()
    assert "timed out" in text, text
    assert "user:***@127.0.0.1" in text, text
    # git itself echoes the password of a git:// URL ("unable to look up
    # user:s3cr3t@..."): the log shows what git said without it.
    url = f"git://user:s3cr3t@127.0.0.1:{free_port()}/mirror.git"
    with (
        open(log, "ab") as err,
        datakit_process(
            "-v", "--git", str(tmp_path / "db"), "--auto-push", url, stderr=err
        ) as (port, mport, _),
        Client.connect(f"tcp://127.0.0.1:{port}", timeout=30) as c,
    ):
        commit_file(c, "master", "c", b"3")
        wait_until(lambda: value(scrape(mport), "datakit_pushes_total", outcome="error") >= 1)
    text = log.read_text()
    assert "exited with code" in text, text
    assert "s3cr3t" not in text, text


def test_auto_push_timeout_is_checked() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "datakit", "serve", "--git", "x", "--auto-push", "y",
         "--auto-push-timeout", "0"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--auto-push-timeout" in out.stderr.decode()


def _processes_naming(text: str) -> list[str]:
    """The command lines of running processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in args and "pytest" not in args:
            found.append(args)
    return found
