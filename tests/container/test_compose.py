"""Structural checks of docker-compose.yml and deploy/prometheus.yml.

No compose engine runs here (no Docker, no registry for prom/prometheus), so
the files are checked against each other, the Dockerfile and datakit's own
command-line parser.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from datakit import cli
from datakit.cli import build_parser
from datakit.serve import ServeConfig
from tests.container.podman import REPO, dockerfile_stages, effective, stage

COMPOSE = REPO / "docker-compose.yml"
VOLUME = re.compile(r"(.+):(/[^:]*)(?::(?:ro|rw))?")
PROMETHEUS = REPO / "deploy" / "prometheus.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    data = yaml.safe_load(PROMETHEUS.read_text())
    assert isinstance(data, dict)
    return data


def port_mappings(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for each short-syntax `ports` entry."""
    out = []
    for entry in service.get("ports", []):
        assert isinstance(entry, str), f"use the short syntax: {entry!r}"
        parts = entry.split(":")
        # "HOST_PORT:CONTAINER" publishes on every interface, like "0.0.0.0:...".
        host = ":".join(parts[:-2]) if len(parts) > 2 else "0.0.0.0"
        host_port, container = (parts[-2], parts[-1]) if len(parts) > 1 else (parts[0], parts[0])
        out.append((host, int(host_port), int(container.split("/")[0])))
    return out


def serve_config(service: dict[str, Any]) -> ServeConfig:
    args = build_parser().parse_args(["serve", *service["command"]])
    return cli.serve_config(args)


def test_services_exist(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "datakit",
        "client",
        "prometheus",
        "bridge-local",
        "ci",
        "replica",
    }


def test_replica_service(compose: dict[str, Any], prometheus_config: dict[str, Any]) -> None:
    """Under a profile, on the server's image, following the database over
    the Git endpoint the database service listens on, and scraped."""
    service = compose["services"]["replica"]
    assert service["profiles"] == ["replica"]
    assert service["image"] == compose["services"]["datakit"]["image"]
    assert "datakit" in service["depends_on"]
    config = serve_config(service)
    primary = serve_config(compose["services"]["datakit"])
    [git_endpoint] = primary.git_endpoints
    assert config.mirror == f"git://datakit:{git_endpoint.port}/"
    assert config.git == "/data" and not config.git_endpoints
    [volume] = service["volumes"]
    name, path = volume.split(":")
    assert path == "/data" and name in (compose.get("volumes") or {})
    assert name not in compose["services"]["datakit"]["volumes"][0]  # its own store
    [endpoint] = config.endpoints
    assert config.prometheus is not None
    published = [c for _, _, c in port_mappings(service)]
    assert published == [endpoint.port, config.prometheus[1]]
    targets = {
        target
        for job in prometheus_config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert f"replica:{config.prometheus[1]}" in targets


def test_local_bridge_service(compose: dict[str, Any]) -> None:
    """Under a profile (not started by default), on the server's image, with
    a command the bridge's own parser accepts and the repository read-only."""
    from datakit.bridges import local
    from datakit.bridges.commands import Parser
    from datakit.bridges.service import parse_store_address

    service = compose["services"]["bridge-local"]
    assert service["profiles"] == ["bridge-local", "ci"]
    assert service["image"] == compose["services"]["datakit"]["image"]
    assert service["entrypoint"] == ["datakit-bridge-local-git"]
    parser = Parser(prog=local.PROG)
    local.add_arguments(parser)
    command = [
        a.replace("${LOCAL_REPO_NAME:-me/project}", "me/project") for a in service["command"]
    ]
    args = parser.parse_args(command)
    assert parse_store_address(args.metadata_store).target == "tcp://datakit:5640"
    [(_repo, path)] = [local.parse_repo_arg(r) for r in args.repositories]
    [volume] = service["volumes"]
    assert volume.endswith(f":{path}:ro")
    assert "datakit" in service["depends_on"]
    assert service_listen(args.listen_prometheus) == ("0.0.0.0", 9092)


def service_listen(text: str) -> tuple[str, int]:
    from datakit.bridges.service import parse_listen

    return parse_listen(text)


def test_ci_service(compose: dict[str, Any], prometheus_config: dict[str, Any]) -> None:
    """DataKitCI under the `ci` profile: its command parses, its configuration
    (deploy/self-ci.toml, mounted where --config points) loads, it tests the
    repository the bridge publishes, under the name the bridge gives it, and
    Prometheus scrapes the bridge and the CI."""
    from datakit.ci.config import load_config
    from datakit.ci.main import build_parser as ci_parser

    service = compose["services"]["ci"]
    assert service["profiles"] == ["ci"]
    assert service["build"]["target"] == "ci" and stage("ci").name == "ci"
    assert service["entrypoint"] == ["datakit", "ci"]
    command = [a.replace("${CI_CONFIG:-/etc/datakit-ci/ci.toml}", "/etc/datakit-ci/ci.toml")
               for a in service["command"]]  # fmt: skip
    args = ci_parser().parse_args(command)
    # SOURCE:TARGET[:MODE], where SOURCE may be ${VAR:-default} (a colon in it).
    mounts = {m[2]: m[1] for v in service["volumes"] if (m := VOLUME.fullmatch(v))}
    assert len(mounts) == len(service["volumes"]), service["volumes"]
    config = load_config(REPO / mounts[args.config])
    bridge = compose["services"]["bridge-local"]
    published = bridge["command"][-1].rsplit(":", 1)
    [project] = config.projects
    assert project.source == published[1] == "/repos/project"
    assert mounts["/repos/project"] == "${LOCAL_REPO:-.}"
    assert args.metadata_store == "tcp:datakit:5640"
    host, port = service_listen(args.listen)
    assert host == "0.0.0.0"
    assert [c for _, _, c in port_mappings(service)] == [port]
    targets = {
        target
        for job in prometheus_config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert {f"ci:{port}", "bridge-local:9092", "datakit:9090"} <= targets


def test_datakit_service_serves_the_volume_with_metrics(compose: dict[str, Any]) -> None:
    service = compose["services"]["datakit"]
    assert service["build"]["context"] == "."
    assert service["build"]["target"] == "runtime"
    command = service["command"]
    assert isinstance(command, list) and "--git=/data" in command
    config = serve_config(service)  # the command is valid for this datakit
    assert config.git == "/data"
    assert config.prometheus is not None
    metrics_host, metrics_port = config.prometheus
    assert metrics_host == "0.0.0.0"  # reachable from the other containers
    [endpoint] = config.endpoints
    assert (endpoint.scheme, endpoint.host) == ("tcp", "0.0.0.0")

    # /data is the named volume, declared at the top level.
    volumes = [v.split(":") for v in service["volumes"]]
    named = [v[0] for v in volumes if len(v) >= 2 and v[1] == "/data"]
    assert named and "/" not in named[0] and not named[0].startswith(".")
    assert named[0] in (compose.get("volumes") or {})

    # Published on loopback only, on ports the image exposes and the server uses.
    mappings = port_mappings(service)
    assert mappings and all(host == "127.0.0.1" for host, _, _ in mappings)
    _, stages = dockerfile_stages()
    exposed = {int(p) for p in (effective(stages, stage("runtime"), "EXPOSE") or "").split()}
    published = {container for _, _, container in mappings}
    assert published == exposed == {5640, 9090, 9418}
    [git_endpoint] = config.git_endpoints
    assert metrics_port in published and endpoint.port in published
    assert git_endpoint.port in published and git_endpoint.host == "0.0.0.0"
    assert service["command"] == json.loads(effective(stages, stage("runtime"), "CMD") or "[]"), (
        "the compose command and the image's CMD have drifted apart"
    )


def test_prometheus_scrapes_datakit(
    compose: dict[str, Any], prometheus_config: dict[str, Any]
) -> None:
    _, metrics_port = serve_config(compose["services"]["datakit"]).prometheus or ("", 0)
    jobs = prometheus_config["scrape_configs"]
    targets = {
        (job.get("metrics_path", "/metrics"), target)
        for job in jobs
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert ("/metrics", f"datakit:{metrics_port}") in targets
    assert f"datakit:{metrics_port}" == "datakit:9090"

    service = compose["services"]["prometheus"]
    assert "datakit" in service.get("depends_on", [])
    # The file above is the one mounted where --config.file points.
    config_file = next(
        a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file=")
    )
    mounts = [v.split(":") for v in service["volumes"]]
    assert any(
        (REPO / src).resolve() == PROMETHEUS.resolve() and dst == config_file
        for src, dst, *_ in mounts
    ), mounts
    listen = next(
        a.split("=", 1)[1] for a in service["command"] if a.startswith("--web.listen-address=")
    )
    mappings = port_mappings(service)
    assert mappings and all(host == "127.0.0.1" for host, _, _ in mappings)
    assert {container for _, _, container in mappings} == {int(listen.rsplit(":", 1)[1])}


def test_published_ports_are_loopback_only_and_distinct(compose: dict[str, Any]) -> None:
    host_ports = []
    for name, service in compose["services"].items():
        for host, host_port, _ in port_mappings(service):
            assert host == "127.0.0.1", f"{name} publishes on {host}"
            host_ports.append(host_port)
    assert len(host_ports) == len(set(host_ports))


def test_client_is_privileged_and_finds_the_server(compose: dict[str, Any]) -> None:
    service = compose["services"]["client"]
    assert service["privileged"] is True  # mounting 9p needs it
    assert service["build"]["target"] == "client"
    assert stage("client").name == "client"
    assert "datakit" in service.get("depends_on", [])
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    # The client resolves the server by its service name on compose's network.
    assert env.get("DATAKIT_HOST", "datakit") == "datakit"
    assert env.get("DATAKIT_PORT", "5640") == "5640"
    assert not service.get("ports"), "the client publishes nothing"
