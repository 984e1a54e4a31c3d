"""BR-25 (GitHub bridge): the flags of upstream's datakit-ci.yml and compose
file are accepted, and the bridge runs with them."""

from __future__ import annotations

import argparse

from datakit.bridges.github import cli
from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import datakit_server, github_bridge, metadata, wait_file
from tests.ports import free_port

UPSTREAM = ["--listen-prometheus=9090", "--datakit", "tcp://datakit:5640", "-v",
            "-c", "*:r,status[ci/datakit]:x,webhook:rw",
            "--webhook", "http://hooks.example:81", "--log-destination", "timestamp"]


def parse(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(args)


def test_br_25_github_compose_flags(fake_github: FakeGitHub) -> None:
    config = cli.config_of(parse(UPSTREAM))
    assert config.endpoint is not None and config.endpoint.target == "tcp://datakit:5640"
    assert config.prometheus == ("0.0.0.0", 9090)
    assert config.webhook == "http://hooks.example:81"
    assert config.webhook_listen == ("0.0.0.0", 81)
    assert config.capabilities.can("x", "status", ("ci", "datakit", "test"))
    assert not config.capabilities.can("w", "pr")
    assert config.resync_interval == 3600
    # upstream's tcp:HOST:PORT form of --datakit, and the same flags for real
    # (listening ports moved to free ones, the host names to this machine)
    prometheus, hook = free_port(), free_port()
    with datakit_server() as address, metadata(address) as (_conn, branch):
        port = address.rsplit(":", 1)[1]
        args = [f"--listen-prometheus=127.0.0.1:{prometheus}", "--datakit",
                f"tcp:127.0.0.1:{port}", "-v", "-c", "*:r,status[ci/datakit]:x,webhook:rw",
                "--webhook", f"http://127.0.0.1:{hook}", "--log-destination", "timestamp",
                "--log-clock", "posix", "--color", "never",
                "--github-url", fake_github.base_url, "-r", "u/r", "--no-resync"]
        with github_bridge(*args) as bridge:
            wait_file(branch, "u/r/.monitor", b"")
            bridge.wait_steps(1)
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{prometheus}/metrics") as r:
                metrics = r.read().decode()
            assert "datakit_github_bridge_syncs_total" in metrics
            assert "datakit_github_calls_total" in metrics
            assert fake_github.hooks("u/r")[0].config["url"] == f"http://127.0.0.1:{hook}"
