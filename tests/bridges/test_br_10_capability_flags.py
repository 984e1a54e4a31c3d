"""BR-10, the command line: -c values that parse start the bridge; the
others stop it at once with one line naming the bad part. (The capability
table itself is checked in test_br_10_capabilities.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    bridge_command,
    bridge_env,
    datakit_server,
    github_bridge,
    metadata,
    wait_file,
)

GOOD = ["pr:rw,status:w", "*:w,commit:,webhook:r", "repo:r,repo[samoht]:w"]
BAD = [("foo:r", "foo: invalid resource"), ("pr", "pr: missing ':'"),
       ("pr:q", "q: invalid capacities")]


def test_br_10_capabilities_on_the_command_line(fake_github: FakeGitHub) -> None:
    with datakit_server() as address, metadata(address) as (_conn, branch):
        for caps in GOOD:
            args = bridge_args(address, fake_github.base_url, "-c", caps)
            with github_bridge(*args) as bridge:
                wait_file(branch, "u/r/.monitor", b"")
                bridge.wait_steps(1)
        for caps, reason in BAD:
            result = subprocess.run(
                bridge_command(*bridge_args(address, fake_github.base_url, "-c", caps)),
                capture_output=True, env=bridge_env(), timeout=60,
            )
            assert result.returncode != 0, caps
            lines = result.stderr.decode().strip().splitlines()
            assert len(lines) == 1 and reason in lines[0], (caps, lines)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["-r", "nouser"], "Bad repository name"),
        (["-d", "ftp://x"], "unknown scheme"),
        (["--webhook", "not a url"], "not an http"),
        (["--token-file", "/nonexistent/token"], "no such file"),
        (["--resync-interval", "-1"], "resync-interval"),
    ],
)
def test_bad_flags_are_one_line_and_a_non_zero_exit(args: list[str], reason: str) -> None:
    result = subprocess.run(bridge_command("--no-datakit", *args), capture_output=True,
                            env=bridge_env(), timeout=60)
    assert result.returncode != 0
    assert reason in result.stderr.decode(), result.stderr


def test_an_unreachable_database_is_one_line_and_exit_1(fake_github: FakeGitHub) -> None:
    from tests.ports import free_port

    result = subprocess.run(
        bridge_command("-d", f"tcp://127.0.0.1:{free_port()}", "--github-url",
                       fake_github.base_url),
        capture_output=True, env=bridge_env(), timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot connect" in lines[0], lines


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("ghp_secret\n")
    token.chmod(0o644)
    result = subprocess.run(bridge_command("--no-datakit", "--token-file", str(token)),
                            capture_output=True, env=bridge_env(), timeout=60)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "readable by group or others" in lines[0], lines
