"""Build the real Dockerfile with podman and use the images as a deployment would.

The server container runs with host networking on free loopback ports (its
default command would take 5640 and 9090, which may be in use on the host);
the default command itself runs in a container with no network at all, where
the image's HEALTHCHECK is run.  Needs root and podman: see
scripts/container-setup.sh.  The kernel here has no 9p, so the client image's
mount is only dry-run (the mount itself is tested in the VM, tests/kernel).
"""

from __future__ import annotations

import json
import re
import shlex
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from datakit.cli import build_parser, serve_config
from datakit.client.ninep_client import Client
from datakit.mount import mount_command
from tests.container.podman import (
    LABEL,
    Podman,
    dockerfile_stages,
    effective,
    healthcheck,
    port_open,
    stage,
)
from tests.ports import free_port

# The first test builds the images (minutes on a cold cache).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

GREETING = b"hello from a container\n"


@dataclass
class Server:
    """A server container on the host network, listening on loopback only."""

    podman: Podman
    image: str
    volume: str
    name: str
    port: int
    mport: int

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.podman.run(
            "run", "-d",
            "--name", self.name,
            "--label", LABEL,
            "--network=host",
            # The image's check probes 5640; this one listens elsewhere.
            "--no-healthcheck",
            "-v", f"{self.volume}:/data",
            self.image,
            "--git=/data",
            f"--listen-9p=tcp://127.0.0.1:{self.port}",
            f"--listen-prometheus=127.0.0.1:{self.mport}",
            "-v",
        )  # fmt: skip
        self.wait_ready()

    def running(self) -> bool:
        return bool(self.podman.inspect(self.name)["State"]["Running"])

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                pytest.fail(f"container {self.name} exited:\n{self.podman.logs(self.name)}")
            if port_open(self.port) and port_open(self.mport):
                return
            time.sleep(0.2)
        pytest.fail(f"container {self.name} not listening after {timeout} s:\n"
                    f"{self.podman.logs(self.name)}")  # fmt: skip

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=10) as r:
            assert r.status == 200
            return r.read().decode()

    def exec(self, *cmd: str) -> str:
        return self.podman.out("exec", self.name, *cmd)

    def stop(self, timeout: int = 30) -> float:
        start = time.monotonic()
        self.podman.run("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        return time.monotonic() - start

    def remove(self) -> None:
        self.podman.remove(self.name)


def new_server(podman: Podman, image: str, volume: str) -> Server:
    name = f"{volume}-server-{time.monotonic_ns()}"
    return Server(podman, image, volume, name, free_port(), free_port())


@pytest.fixture
def server(podman: Podman, server_image: str, volume: str) -> Iterator[Server]:
    s = new_server(podman, server_image, volume)
    s.start()
    yield s
    s.remove()


def commit(address: str, name: str, data: bytes, *, transaction: str = "t") -> str:
    """Commit one file on master over 9p; return the new head."""
    with Client.connect(address, timeout=30) as c:
        if not c.exists("branch/master"):
            c.mkdir("branch/master")
        t = f"branch/master/transactions/{transaction}"
        c.mkdir(t)
        c.create(f"{t}/rw/{name}", data)
        c.write(f"{t}/ctl", b"commit")
        head = c.read("branch/master/head").decode().strip()
    assert re.fullmatch(r"[0-9a-f]{40}", head), head
    return head


def read_master(address: str, name: str) -> tuple[str, bytes]:
    with Client.connect(address, timeout=30) as c:
        return c.read("branch/master/head").decode().strip(), c.read(f"branch/master/ro/{name}")


def metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


# ---- image metadata ----------------------------------------------------------


def test_image_config_is_what_the_dockerfile_says(podman: Podman, server_image: str) -> None:
    _, stages = dockerfile_stages()
    default = stages[-1]
    assert default.base == "runtime", "the default target should be the runtime image"
    image = podman.image_inspect(server_image)
    config = image["Config"]

    def want(keyword: str) -> str:
        value = effective(stages, default, keyword)
        assert value is not None, f"no {keyword} for the default target"
        return value

    assert config["Entrypoint"] == json.loads(want("ENTRYPOINT")) == ["datakit", "serve"]
    cmd = json.loads(want("CMD"))
    assert config["Cmd"] == cmd
    assert set(config["ExposedPorts"]) == {f"{p}/tcp" for p in want("EXPOSE").split()}
    assert set(config["ExposedPorts"]) == {"5640/tcp", "9090/tcp", "9418/tcp"}
    assert config["User"] == want("USER") == "datakit"
    assert set(config["Volumes"]) == set(json.loads(want("VOLUME"))) == {"/data"}
    if effective(stages, default, "STOPSIGNAL"):
        assert config.get("StopSignal") == want("STOPSIGNAL")
    hc = image.get("Healthcheck") or config.get("Healthcheck")
    assert hc, "the image has no healthcheck (built without --format docker?)"
    expected = healthcheck(want("HEALTHCHECK"))
    assert {k: hc.get(k) for k in expected} == expected
    assert "5640" in " ".join(hc["Test"]), "the healthcheck should probe the 9p port"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"].split(":")[0] == "/opt/datakit/bin"

    # The default command is valid for this datakit, serves the volume, and
    # listens on the exposed ports on every interface.
    args = build_parser().parse_args(["serve", *cmd])
    serve = serve_config(args)
    assert serve.git == "/data"
    assert serve.prometheus == ("0.0.0.0", 9090)
    assert args.listen_9p == "tcp://0.0.0.0:5640"


# ---- the server container ----------------------------------------------------


def test_server_serves_9p_and_metrics(podman: Podman, server: Server) -> None:
    assert metric(server.metrics(), "datakit_commits_total") == 0.0
    head = commit(server.address, "greeting", GREETING)
    assert read_master(server.address, "greeting") == (head, GREETING)
    text = server.metrics()
    assert re.search(r"^datakit_commits_total 1\.0$", text, re.M), text
    deadline = time.monotonic() + 10  # the server notices the disconnect in its own time
    while metric(text, "datakit_9p_open_connections") != 0.0 and time.monotonic() < deadline:
        time.sleep(0.1)
        text = server.metrics()
    assert metric(text, "datakit_9p_open_connections") == 0.0, text
    # A real Git commit in the volume, readable with the image's git.
    assert server.exec("git", "-C", "/data", "rev-parse", "refs/heads/master").strip() == head
    assert server.exec("git", "-C", "/data", "show", "master:greeting").encode() == GREETING


def test_server_runs_as_non_root(podman: Podman, server: Server) -> None:
    uid = server.exec("id", "-u", "datakit").strip()
    assert uid.isdigit() and uid != "0"
    # PID 1 is the server itself (exec-form ENTRYPOINT), with every uid the user's.
    cmdline = server.exec("cat", "/proc/1/cmdline").split("\0")
    assert "serve" in cmdline and any(a.endswith("datakit") for a in cmdline), cmdline
    status = server.exec("cat", "/proc/1/status")
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
    assert uids and uids.group(1).split() == [uid] * 4, status
    assert gids and "0" not in gids.group(1).split(), status
    # Seen from the host (rootful podman, no user namespace): not root there either.
    top = podman.out("top", server.name, "hpid", "user", "args")
    rows = [line.split(None, 2) for line in top.splitlines()[1:] if "serve" in line]
    assert rows and all(r[1] == "datakit" for r in rows), top
    for hpid, _, _ in rows:
        with open(f"/proc/{hpid}/status") as f:
            host_uids = re.search(r"^Uid:\s+(.*)$", f.read(), re.M)
        assert host_uids and host_uids.group(1).split() == [uid] * 4
    # The repository the server created in the volume belongs to that user.
    owners = server.exec("stat", "-c", "%U", "/data", "/data/HEAD", "/data/objects").split()
    assert owners == ["datakit"] * 3


def test_data_persists_across_restart(
    podman: Podman, server_image: str, volume: str, server: Server
) -> None:
    head = commit(server.address, "greeting", GREETING)

    # Same container, stopped and started again.
    server.stop()
    assert not server.running()
    podman.run("start", server.name)
    server.wait_ready()
    assert read_master(server.address, "greeting") == (head, GREETING)

    # A new container on the same volume: the data lives in the volume.
    server.remove()
    again = new_server(podman, server_image, volume)
    again.start()
    try:
        assert read_master(again.address, "greeting") == (head, GREETING)
        assert metric(again.metrics(), "datakit_commits_total") == 0.0  # a new process
        second = commit(again.address, "second", b"2\n", transaction="t2")
        assert second != head
        assert again.exec("git", "-C", "/data", "rev-parse", "master~1").strip() == head
    finally:
        again.remove()


def test_stop_is_prompt_and_clean(podman: Podman, server: Server) -> None:
    """`docker stop` must stop the server with its stop signal, not a SIGKILL."""
    commit(server.address, "greeting", GREETING)
    seconds = server.stop(timeout=30)
    state = podman.inspect(server.name)["State"]
    logs = podman.logs(server.name)
    assert state["ExitCode"] != 137 and seconds < 20, (
        f"stop took {seconds:.1f} s, exit code {state['ExitCode']} (137: SIGKILLed)\n{logs}"
    )
    assert "Traceback" not in logs, f"the server did not shut down cleanly:\n{logs}"


def test_default_command_and_healthcheck(podman: Podman, server_image: str, volume: str) -> None:
    """The image's own CMD (0.0.0.0:5640 and :9090), in a container with no network."""
    cmd = podman.image_inspect(server_image)["Config"]["Cmd"]
    name = f"{volume}-default"
    podman.run(
        "run", "-d", "--name", name, "--label", LABEL,
        "--network=none",
        # No systemd here to run the check on a timer: run it by hand below.
        "--health-interval=disable",
        "-v", f"{volume}:/data",
        server_image,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            result = podman.run("healthcheck", "run", name, check=False)
            if result.returncode == 0:
                break
            assert podman.inspect(name)["State"]["Running"], podman.logs(name)
            assert time.monotonic() < deadline, (
                f"never healthy: {result.stdout}{result.stderr}\n{podman.logs(name)}"
            )
            time.sleep(0.5)
        state = podman.inspect(name)["State"]
        health = state.get("Health") or state.get("Healthcheck") or {}
        assert health.get("Status") == "healthy", state

        cmdline = podman.out("exec", name, "cat", "/proc/1/cmdline").rstrip("\0").split("\0")
        assert cmdline[-len(cmd) - 1 :] == ["serve", *cmd], cmdline
        scrape = (
            "import urllib.request; "
            "print(urllib.request.urlopen('http://127.0.0.1:9090/metrics', timeout=10)"
            ".read().decode())"
        )
        text = podman.out("exec", name, "python", "-c", scrape)
        assert metric(text, "datakit_commits_total") == 0.0
        assert podman.out("exec", name, "git", "-C", "/data", "rev-parse", "--is-bare-repository"
                          ).strip() == "true"  # fmt: skip

        # The check fails once nothing listens on 5640.
        podman.run("kill", "--signal", "INT", name)
        deadline = time.monotonic() + 30
        while podman.inspect(name)["State"]["Running"]:
            assert time.monotonic() < deadline, "SIGINT did not stop the server"
            time.sleep(0.2)
        assert podman.run("healthcheck", "run", name, check=False).returncode != 0
    finally:
        podman.remove(name)


# ---- the client image ----------------------------------------------------------


def test_client_image(podman: Podman, client_image: str) -> None:
    client = stage("client")
    _, stages = dockerfile_stages()
    config = podman.image_inspect(client_image)["Config"]
    image = podman.image_inspect(client_image)
    assert config.get("User") in ("root", "0")
    assert not config.get("Entrypoint")
    cmd = json.loads(client.last("CMD") or "null")
    assert config["Cmd"] == cmd and cmd[:2] == ["sh", "-c"]
    hc = image.get("Healthcheck") or config.get("Healthcheck")
    assert hc and hc["Test"] == ["NONE"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["DATAKIT_HOST"] == "datakit" and env["DATAKIT_PORT"] == "5640"
    assert effective(stages, client, "VOLUME")  # inherited from runtime; nothing else

    default_mount = shlex.join(mount_command(build_parser().parse_args(["mount"])))
    out = podman.out("run", "--rm", "--network=none", client_image, "datakit", "mount", "--dry-run")
    assert out.strip() == default_mount

    # The image's own command, privileged as in docker-compose.yml, with the
    # server's name resolving as on compose's network; mount and ls only print.
    prelude = (
        'datakit() { sub=$1; shift; command datakit "$sub" --dry-run "$@"; }; '
        'ls() { echo "ls $*"; }; '
    )
    out = podman.out(
        "run", "--rm", "--privileged", "--network=host",
        "--add-host", "datakit:192.0.2.10",
        client_image, "sh", "-c", prelude + cmd[2],
    )  # fmt: skip
    expected = shlex.join(
        mount_command(build_parser().parse_args(["mount", "-p", "5640", "192.0.2.10", "/db"]))
    )
    assert out.splitlines() == [expected, "ls /db"], out
    tools = podman.out("run", "--rm", "--network=none", client_image,
                       "sh", "-c", "for t in mount getent ps; do command -v $t; done")  # fmt: skip
    assert len(tools.split()) == 3, tools
