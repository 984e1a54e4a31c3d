"""Drive rootful podman for the container tests, and read the Dockerfile.

podman keeps its state in $DATAKIT_CONTAINER_DIR (default
/var/tmp/datakit-containers), configured by scripts/container-setup.sh, which
also builds a stand-in for the public base image (no registry is reachable).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
SETUP_SCRIPT = REPO / "scripts" / "container-setup.sh"
CONTAINER_DIR = Path(os.environ.get("DATAKIT_CONTAINER_DIR", "/var/tmp/datakit-containers"))
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Containers and volumes carry this label, unique to the test session, so a
# session cleans up only its own (other runs may share the storage).
LABEL = f"datakit-container-test={os.getpid()}"
IMAGE_LABEL = "datakit-container-test=image"
INPUTS_LABEL = "datakit-container-test.inputs"


class PodmanError(AssertionError):
    pass


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINER_DIR / "containers.conf"))
    env.setdefault("CONTAINERS_STORAGE_CONF", str(CONTAINER_DIR / "storage.conf"))
    env.setdefault("CONTAINERS_REGISTRIES_CONF", str(CONTAINER_DIR / "registries.conf"))
    env["TMPDIR"] = str(CONTAINER_DIR / "tmp")
    return env


def config_files_present() -> bool:
    return (
        all(
            (CONTAINER_DIR / name).is_file()
            for name in ("containers.conf", "storage.conf", "registries.conf")
        )
        and (CONTAINER_DIR / "tmp").is_dir()
    )


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Podman:
    def __init__(self) -> None:
        exe = shutil.which("podman")
        if exe is None:
            raise PodmanError("podman is not installed")
        self.exe = exe
        self.env = podman_env()

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.exe, *args]
        try:
            result = subprocess.run(
                cmd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise PodmanError(f"{shlex.join(cmd)} timed out after {timeout} s") from exc
        if check and result.returncode != 0:
            raise PodmanError(
                f"{shlex.join(cmd)} exited with {result.returncode}\n"
                f"stdout:\n{tail(result.stdout)}\nstderr:\n{tail(result.stderr)}"
            )
        return result

    def out(self, *args: str, timeout: float = 120) -> str:
        return self.run(*args, timeout=timeout).stdout

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def image_id(self, ref: str) -> str | None:
        r = self.run("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        return (r.stdout.strip() or None) if r.returncode == 0 else None

    def image_inspect(self, ref: str) -> dict:
        return json.loads(self.out("image", "inspect", ref))[0]

    def inspect(self, container: str) -> dict:
        # podman reads the container process's cgroup: while that process is
        # exiting (just signalled) it can fail with "read /proc/N/cgroup: no
        # such process". That is a moment, not an answer: ask again.
        for _ in range(5):
            result = self.run("container", "inspect", container, check=False)
            if result.returncode == 0:
                return json.loads(result.stdout)[0]
            if "no such process" not in result.stderr:
                break
            time.sleep(0.2)
        return json.loads(self.out("container", "inspect", container))[0]

    def label(self, ref: str, name: str) -> str | None:
        r = self.run("image", "inspect", "--format", "{{json .Labels}}", ref, check=False)
        if r.returncode != 0:
            return None
        return (json.loads(r.stdout) or {}).get(name)

    def build(self, tag: str, log: Path, *, target: str | None = None) -> float | None:
        """Build the repository's Dockerfile; return the seconds it took.

        Returns None without building when `tag` was built from the same inputs
        (Dockerfile, COPY sources, base image, target): buildah would reuse
        every layer anyway, but it hashes /opt/datakit for `COPY --from` each
        time, which takes up to a minute on a busy machine.
        """
        digest = build_inputs_digest(self.image_id(base_image()) or "", target)
        if self.label(tag, INPUTS_LABEL) == digest:
            log.write_text(f"{tag}: built from the same inputs ({digest}); not rebuilt\n")
            return None
        cmd = [
            self.exe, "build",
            # HEALTHCHECK exists only in Docker's image format (as with `docker build`).
            "--format", "docker",
            "--pull=never",
            "--network=host",
            "--label", IMAGE_LABEL,
            "--label", f"{INPUTS_LABEL}={digest}",
            "-t", tag,
            "-f", str(DOCKERFILE),
        ]  # fmt: skip
        if CA_BUNDLE.is_file():
            # PyPI's TLS is intercepted here by a CA a fresh image does not trust.
            cmd += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        if target:
            cmd += ["--target", target]
        cmd.append(str(REPO))
        start = time.monotonic()
        with open(log, "w") as f:
            f.write(f"$ {shlex.join(cmd)}\n")
            # Each line stamped with the seconds since the start: where the time goes.
            with subprocess.Popen(
                cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    f.write(f"[{time.monotonic() - start:6.1f}] {line}")
                    if time.monotonic() - start > 1200:
                        proc.kill()
                        raise PodmanError(f"podman build timed out; log: {log}")
                rc = proc.wait()
        if rc != 0:
            raise PodmanError(
                f"podman build {'--target ' + target if target else ''} failed ({rc}); "
                f"log {log}:\n{tail(log.read_text(), 60)}"
            )
        return time.monotonic() - start

    def logs(self, container: str) -> str:
        r = self.run("logs", container, check=False)
        return r.stdout + r.stderr

    def remove(self, *containers: str) -> None:
        if containers:
            self.run("rm", "-f", "-v", "-t", "5", *containers, check=False, timeout=60)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# ---- the Dockerfile ----------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [v for k, v in self.instructions if k == keyword]
        return values[-1] if values else None


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def dockerfile_stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults, and the stages in order (the last is the default target)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in dockerfile_instructions(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def stage(name: str, path: Path = DOCKERFILE) -> Stage:
    for s in dockerfile_stages(path)[1]:
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r} in {path}")


def effective(stages: list[Stage], target: Stage, keyword: str) -> str | None:
    """The value of `keyword` in `target`, inheriting from `FROM <stage>` parents."""
    by_name = {s.name: s for s in stages if s.name}
    current: Stage | None = target
    while current is not None:
        value = current.last(keyword)
        if value is not None:
            return value
        current = by_name.get(current.base)
    return None


def base_image(path: Path = DOCKERFILE) -> str:
    """The fully qualified name of the Dockerfile's external base image."""
    args, stages = dockerfile_stages(path)
    names = {s.name for s in stages if s.name}
    externals = {s.base for s in stages if s.base not in names}
    assert len(externals) == 1, f"expected one external base image, got {externals}"
    ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], externals.pop())
    first = ref.split("/")[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


def copy_sources(path: Path = DOCKERFILE) -> list[str]:
    """The build-context paths the Dockerfile's COPY and ADD instructions read."""
    sources: list[str] = []
    for keyword, rest in dockerfile_instructions(path.read_text()):
        if keyword not in ("COPY", "ADD"):
            continue
        if rest.startswith("["):
            words = json.loads(rest)
        else:
            words = shlex.split(rest)
            if any(w.startswith("--from") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
        sources += words[:-1]
    return sources


def build_inputs_digest(base_id: str, target: str | None) -> str:
    """A digest of everything a build reads but the network: when it is unchanged,
    so is the image (short of new package versions, which a layer cache ignores too)."""
    h = hashlib.sha256()
    h.update(f"target={target}\nbase={base_id}\n".encode())
    h.update(DOCKERFILE.read_bytes())
    for source in sorted(set(copy_sources())):
        root = REPO / source
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for file in files:
            if file.is_file():
                h.update(f"\0{file.relative_to(REPO)}\0{file.stat().st_mode & 0o111}\0".encode())
                h.update(file.read_bytes())
    return h.hexdigest()[:32]


def duration_ns(text: str) -> int:
    units = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    total = 0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text):
        total += int(float(number) * units[unit])
    return total


def healthcheck(value: str) -> dict:
    """HEALTHCHECK [--opt=v ...] CMD [...] as the image config's Healthcheck."""
    if value.strip().upper() == "NONE":
        return {"Test": ["NONE"]}
    options: dict[str, str] = {}
    words = value.split()
    while words and words[0].startswith("--"):
        key, _, v = words.pop(0)[2:].partition("=")
        options[key] = v
    rest = " ".join(words)
    assert rest.startswith("CMD "), value
    command = rest[4:].strip()
    test = ["CMD", *json.loads(command)] if command.startswith("[") else ["CMD-SHELL", command]
    hc: dict = {"Test": test}
    for key, field_name in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
    ):
        if key in options:
            hc[field_name] = duration_ns(options[key])
    if "retries" in options:
        hc["Retries"] = int(options["retries"])
    return hc


def ready_podman(image: str, who: str) -> Podman:
    """Podman, configured, with ``image`` present: scripts/container-setup.sh
    is run when its configuration or the image is missing. ``who`` needs it
    (for the messages). A missing podman or root is a failure, not a skip."""
    import pytest

    if os.geteuid() != 0:
        pytest.fail(f"{who}: root is needed (rootful podman)")
    try:
        pm = Podman()
    except PodmanError:
        pytest.fail(
            "podman is not installed: run scripts/container-setup.sh as root first "
            "(it installs podman, configures it and builds the base image stand-in)"
        )
    if not config_files_present() or not pm.image_exists(image):
        env = dict(
            os.environ, DATAKIT_CONTAINER_DIR=str(CONTAINER_DIR), DATAKIT_BASE_IMAGE=base_image()
        )
        result = subprocess.run(
            ["bash", str(SETUP_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"{SETUP_SCRIPT} failed ({result.returncode}):\n{tail(result.stderr, 60)}")
        pm = Podman()
        assert pm.image_exists(image), f"{SETUP_SCRIPT} did not provide {image}"
    return pm

