"""BR-24: the local bridge's argument errors: one clear line, exit status 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bridges.localbridge import make_repo

ROOT = Path(__file__).parents[2]


def run(*args: str, script: bool = False) -> subprocess.CompletedProcess[str]:
    """`datakit bridge local ARGS`, or the `datakit-bridge-local-git` entry point."""
    if script:
        command = [
            sys.executable,
            "-c",
            "import sys; from datakit.bridges.commands import local_main; sys.exit(local_main())",
        ]
    else:
        command = [sys.executable, "-m", "datakit", "bridge", "local"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("script", [False, True], ids=["datakit-bridge-local", "script"])
def test_br_24_bad_repository_name(tmp_path: Path, script: bool) -> None:
    repo = make_repo(tmp_path / "p")
    done = run(f"me:{repo}", script=script)
    assert done.returncode == 1
    assert 'Bad repository name "me" (format should be user/project)' in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for bad in ("a/b/c", "/p", "me/", "me/p q"):
        done = run(f"{bad}:{repo}", script=script)
        assert done.returncode == 1
        assert f'Bad repository name "{bad}"' in done.stderr


def test_br_24_path_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "file").write_text("x")
    missing = tmp_path / "missing"
    for path in (plain, missing, plain / "file"):
        done = run(f"me/p:{path}")
        assert done.returncode == 1, done.stderr
        assert str(path) in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = run("me/p")
    assert done.returncode == 1 and "NAME:PATH" in done.stderr


def test_br_24_no_database(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    port = free_port()
    done = run("--metadata-store", f"tcp:127.0.0.1:{port}", f"me/p:{repo}")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"datakit bridge local: cannot connect to the metadata store at "
        f"tcp:127.0.0.1:{port}: Connection refused"
    )
    done = run("--metadata-store", f"unix://{tmp_path}/no.sock", f"me/p:{repo}")
    assert done.returncode == 1
    assert "cannot connect to the metadata store" in done.stderr


def test_br_24_other_bad_arguments(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    cases = [
        (["--metadata-store", "ftp://x", f"me/p:{repo}"], "unknown scheme"),
        (["--metadata-store", "tcp:host:99999", f"me/p:{repo}"], "tcp:HOST:PORT"),
        (["--listen-prometheus", "nope", f"me/p:{repo}"], "--listen-prometheus"),
        (["--poll-interval", "0", f"me/p:{repo}"], "--poll-interval"),
        ([f"me/p:{repo}", f"me/p:{repo}"], "me/p given twice"),
        ([], "the following arguments are required"),
    ]
    for args, message in cases:
        done = run(*args)
        assert done.returncode == 1, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)


def test_a_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    """Found after BR-24: the port taken is known only once the service
    runs; it must still be one line and exit 1, not a traceback."""
    repo = tmp_path / "p"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    meta = tmp_path / "meta.git"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run(
            "--metadata-store", f"git://{meta}", "--listen-prometheus", f"127.0.0.1:{port}",
            f"me/p:{repo}",
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--listen-prometheus 127.0.0.1:{port}" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
