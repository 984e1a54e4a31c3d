"""A real OCI registry for image tests: Debian's `docker-registry` (CNCF distribution 2.8).

Tests push to the registry users run, not to a mock, because its quirks are the
point (spec Part D: 202 for a single POST, a Location that already carries a
query). It runs with a config of our own (Debian's default turns on htpasswd
auth pointing at a directory), listens on port 0 of 127.0.0.1 and the port is
read from what it announces, so two tests never race for a port.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

_LISTENING = re.compile(r'msg="listening on 127\.0\.0\.1:(\d+)')
# Access-log lines (Apache combined format, written to stdout by the registry).
_ACCESS = re.compile(r'^\S+ - \S+ \[[^\]]*\] "(\w+) (\S+) HTTP/[\d.]+" (\d{3}) ')


@dataclass
class RegistryProc:
    """A running registry. `address` is "127.0.0.1:PORT" (use with --plain-http).

    `log_path` gets the registry's stdout and stderr: its own log lines and an
    access-log line per request, so `log()` (all of it) or `requests()` (the
    parsed access log) tell a test what a client really sent."""

    address: str
    root: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    username: str | None = None
    password: str | None = None
    cert_path: Path | None = None  # the self-signed certificate when started with tls=True

    def log(self) -> str:
        """Everything the registry wrote so far."""
        return self.log_path.read_text(errors="replace")

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path?query, status) of every request the registry answered, in order.

        The registry writes each line just after answering, so the last request
        a test made may show up a moment late: for exact counts right after a
        call, put a RegistryProxy in front (it records before answering)."""
        found = []
        for line in self.log().splitlines():
            m = _ACCESS.match(line)
            if m:
                found.append((m.group(1), m.group(2), int(m.group(3))))
        return found

    @property
    def url(self) -> str:
        return f"{'https' if self.cert_path else 'http'}://{self.address}"


def _htpasswd_line(username: str, password: str) -> str:
    import bcrypt  # only the auth tests need it

    # Cost 4: the registry checks the hash on every request; this is a test.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{username}:{hashed}\n"


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "registry.crt", workdir / "registry.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _config(root: Path, htpasswd_path: Path | None, tls: tuple[Path, Path] | None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  accesslog:",
        "    disabled: false",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        "  addr: 127.0.0.1:0",
        "  secret: datakit-tests-registry-secret",
    ]
    if tls is not None:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd_path is not None:
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: datakit-tests",
            f"    path: {htpasswd_path}",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def running_registry(
    workdir: Path, *, htpasswd: dict[str, str] | None = None, tls: bool = False
) -> Iterator[RegistryProc]:
    """Run `docker-registry serve` with storage under `workdir`/storage until the block ends.

    `htpasswd`: {username: password} turns on Basic auth (bcrypt hashes, as the
    registry requires). `tls`: serve HTTPS with a fresh self-signed certificate
    for 127.0.0.1 (`cert_path`), so clients need --insecure or that CA.
    Waits until /v2/ answers (200, or 401 with auth) and
    stops the registry (SIGTERM, then SIGKILL) on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "storage"
    root.mkdir(exist_ok=True)
    htpasswd_path = None
    if htpasswd is not None:
        htpasswd_path = workdir / "htpasswd"
        htpasswd_path.write_text("".join(_htpasswd_line(u, p) for u, p in htpasswd.items()))
    config_path = workdir / "registry.yml"
    cert_key = _self_signed(workdir) if tls else None
    config_path.write_text(_config(root, htpasswd_path, cert_key))
    log_path = workdir / "registry.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        port = _wait_for_port(proc, log_path)
        user, password = next(iter(htpasswd.items())) if htpasswd else (None, None)
        cert = cert_key[0] if cert_key else None
        reg = RegistryProc(f"127.0.0.1:{port}", root, log_path, proc, user, password, cert)
        _wait_for_api(reg)
        yield reg
    finally:
        _stop(proc)


def _wait_for_port(proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        m = _LISTENING.search(text)
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}: {text[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"docker-registry did not announce its port: {log_path.read_text()[-2000:]}")


def _wait_for_api(reg: RegistryProc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            verify: ssl.SSLContext | bool = True
            if reg.cert_path is not None:
                verify = ssl.create_default_context(cafile=str(reg.cert_path))
            status = httpx.get(f"{reg.url}/v2/", timeout=5, verify=verify).status_code
            if status in (200, 401):
                return
            last = status
        except httpx.HTTPError as e:
            last = e
        if reg.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {reg.process.returncode}: {reg.log()}")
        time.sleep(0.05)
    raise TimeoutError(f"docker-registry /v2/ never answered (last: {last!r})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
