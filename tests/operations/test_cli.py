"""The `datakit` command line: help, bad options, unusable addresses."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from datakit.cli import UsageError, build_parser, serve_config
from datakit.serve import ServeConfig
from tests.ports import free_port


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datakit", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_every_option() -> None:
    top = run("--help")
    assert top.returncode == 0 and "serve" in top.stdout and "mount" in top.stdout
    serve = run("serve", "--help")
    assert serve.returncode == 0
    for option in (
        "--git",
        "--auto-push",
        "--listen-9p",
        "--url",
        "--listen-prometheus",
        "--max-msize",
        "--max-connections",
        "--read-only",
        "-v",
        "-q",
        "--verbosity",
        "DATAKIT_VERBOSE",
    ):
        assert option in serve.stdout, option


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("datakit ")


def test_bad_option_is_one_line_and_status_2() -> None:
    result = run("serve", "--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unrecognized arguments: --no-such-option" in result.stderr


def test_bad_endpoint_is_one_line_and_status_2() -> None:
    result = run("serve", "--listen-9p", "tcp://localhost:notaport")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "datakit: tcp://localhost:notaport: use tcp://host:port"
    ]


def test_auto_push_needs_git() -> None:
    result = run("serve", "--auto-push", "/tmp/x.git")
    assert result.returncode == 2
    assert "--auto-push needs --git" in result.stderr


def test_address_in_use_is_one_line_and_status_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run("serve", "--listen-9p", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"Failed to set up server socket listening on tcp://127.0.0.1:{port}" in lines[0]


def test_bad_verbosity_env_is_rejected() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "datakit", "serve", "--listen-9p", f"tcp://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"DATAKIT_VERBOSE": "loud", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2 and "DATAKIT_VERBOSE" in result.stderr


def test_mount_dry_run_prints_the_mount_command() -> None:
    result = run("mount", "--dry-run", "10.1.2.3", "/mnt/db", "-p", "5641")
    assert result.returncode == 0
    assert result.stdout.split() == [
        "mount",
        "-t",
        "9p",
        "-o",
        "trans=tcp,port=5641,version=9p2000.L,msize=262144,cache=none",
        "10.1.2.3",
        "/mnt/db",
    ]


def bad_inputs(tmp: Path) -> list[tuple[list[str], int, str]]:
    """(arguments, exit status, what the one line says) for inputs that must fail."""
    plain = tmp / "plain"
    plain.write_text("not a repository")
    port = f"tcp://127.0.0.1:{free_port()}"
    broken = tmp / "broken.git"  # a config git itself cannot parse
    subprocess.run(["git", "init", "-q", "--bare", str(broken)], check=True)
    (broken / "config").write_text("[core\nbare = true\n")
    astray = tmp / "astray"  # a work tree whose .git names a missing directory
    astray.mkdir()
    (astray / ".git").write_text(f"gitdir: {tmp / 'gone'}\n")
    return [
        (["serve", "--git", str(broken), "--listen-9p", port], 2, str(broken)),
        (["serve", "--git", str(astray), "--listen-9p", port], 2, str(astray)),
        (["serve", "--git", str(plain), "--listen-9p", port], 2, f"{plain}"),
        (["serve", "--git", "/proc/self/no/x", "--listen-9p", port], 2, "/proc/self/no/x"),
        (["serve", "--git", str(plain / "below"), "--listen-9p", port], 2, str(plain)),
        (["serve", "--listen-9p", "gopher://h"], 2, "invalid endpoint"),
        (["serve", "--listen-9p", "unix:///no/such/dir/sock"], 2, "/no/such/dir/sock"),
        (["serve", "--listen-9p", "fd://987"], 2, "fd://987"),
        (["serve", "--listen-prometheus", "x:y"], 2, "--listen-prometheus"),
        (["serve", "--listen-9p", port, "--listen-prometheus", "192.0.2.1:9"], 2, "Prometheus"),
        (["serve", "--max-connections", "0"], 2, "--max-connections"),
        (["serve", "--listen-9p", "tcp://[::1"], 2, "tcp://[::1"),
        (["serve", "--listen-9p", f"tcp://{'a' * 300}:1"], 2, "invalid host name"),
        (["serve", "--listen-9p", "tcp://a..b:1"], 2, "invalid host name"),
        (["serve", "--listen-9p", port, "--listen-prometheus", "a..b:1"], 2, "invalid host"),
        (["mount", "--dry-run", "-p", "99999"], 2, "--port"),
        # Digits other than 0-9 pass str.isdigit() but not int().
        (["serve", "--listen-9p", "tcp://127.0.0.1:\u00b2"], 2, "tcp://host:port"),
        (["serve", "--listen-9p", "fd://\u00b2"], 2, "fd://N"),
        (["serve", "--listen-9p", f"fd://{'9' * 30}"], 2, "fd://"),
        (["serve", "--listen-9p", port, "--listen-prometheus", "\u00b2"], 2, "PORT"),
        (["serve", "--max-connections", "\u00b2"], 2, "not a positive number"),
        (["mount", "--dry-run", "-p", "\u00b2"], 2, "not a port number"),
        (["mount", "127.0.0.1", str(plain)], 1, "datakit mount"),
    ]


def test_bad_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    for args, status, says in bad_inputs(tmp_path):
        result = run(*args)
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.returncode == status, (args, result.stderr)
        assert says in lines[-1], (args, result.stderr)
        if not lines[0].startswith("usage:"):  # argparse shows the usage, then one line
            assert len(lines) == 1, (args, result.stderr)


def test_fd_endpoint_that_is_no_listening_stream_socket_is_one_line(tmp_path: Path) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unbound = socket.socket()
    with udp, unbound:
        for sock in (udp, unbound):
            fd = sock.fileno()
            result = subprocess.run(
                [sys.executable, "-m", "datakit", "serve", "--listen-9p", f"fd://{fd}"],
                capture_output=True,
                text=True,
                timeout=30,
                pass_fds=[fd],
            )
            assert "Traceback" not in result.stderr, result.stderr
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip().splitlines() == [
                f"datakit: Failed to set up server socket listening on fd://{fd}: "
                "not a listening stream socket"
            ], result.stderr


def test_serve_arguments_become_a_validated_config_in_the_cli() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--listen-9p",
            "tcp://127.0.0.1:1,unix:///tmp/s",
            "--listen-prometheus",
            "[::1]:9100",
            "--remote-schemes",
            "https",
            "--max-file-size",
            "1M",
        ]
    )
    config = serve_config(args)
    assert [str(e) for e in config.endpoints] == ["tcp://127.0.0.1:1", "unix:///tmp/s"]
    assert config.prometheus == ("::1", 9100)
    assert config.remotes.schemes == frozenset({"https"})
    assert config.remotes.max_object == 1 << 20 == config.max_file_size
    port_only = build_parser().parse_args(["serve", "--listen-prometheus", "9"])
    assert serve_config(port_only).prometheus == ("0.0.0.0", 9)
    for bad in (["--remote-schemes", "gopher"], ["--listen-9p", ""], ["--listen-prometheus", "x"]):
        with pytest.raises(UsageError):
            serve_config(build_parser().parse_args(["serve", *bad]))


def test_git_endpoint_push_and_mirror_flags() -> None:
    def config(*argv: str) -> ServeConfig:
        return serve_config(build_parser().parse_args(["serve", *argv]))

    c = config(
        "--listen-git", "tcp://0.0.0.0,tcp://127.0.0.1:0", "--git-push", "--git-timeout", "5"
    )
    assert [str(e) for e in c.git_endpoints] == ["tcp://0.0.0.0:9418", "tcp://127.0.0.1:0"]
    assert c.git_push == "ff" and c.git_timeout == 5
    assert config("--listen-git", "tcp://h", "--git-push=force").git_push == "force"
    replica = config("--mirror", " git://primary/ ", "--mirror-interval", "1")
    assert replica.mirror == "git://primary/" and replica.mirror_interval == 1
    assert config("--remote-max-pack", "10M").remotes.max_pack == 10 << 20
    for bad, says in (
        (["--git-push"], "--git-push needs --listen-git"),
        (["--listen-git", "unix:///tmp/g"], "git:// is TCP only"),
        (["--listen-git", "tcp://h:x"], "--listen-git: tcp://h:x: use tcp://host:port"),
        (["--listen-git", " , "], "--listen-git: no endpoint given"),
        (["--mirror", "git://p/", "--listen-git", "tcp://h", "--git-push"], "takes no writes"),
        (["--mirror", " "], "--mirror: no URL given"),
        (["--read-only", "--listen-git", "tcp://h", "--git-push"], "takes no writes"),
    ):
        with pytest.raises(UsageError, match=says):
            config(*bad)


def test_git_push_value_is_checked_by_argparse() -> None:
    result = run("serve", "--listen-git", "tcp://127.0.0.1:0", "--git-push=always")
    assert result.returncode == 2
    assert "invalid choice: 'always'" in result.stderr
