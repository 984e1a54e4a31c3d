"""Pytest fixtures and helpers for tests that drive the Linux kernel 9p client.

Imported (star) by tests/kernel/conftest.py and tests/interop/conftest.py.

Fixtures:
  vm             session-scoped: prepares qemu + the kernel/busybox cache once
                 (FAILS, never skips, if that is impossible) and returns a
                 :class:`VM`; ``vm.run(script, port=..., version=...)`` boots a
                 guest, mounts 127.0.0.1:port at /db and runs the script.
  ninep_server   factory: ``ninep_server(argv)`` starts a 9p server process on
                 a free 127.0.0.1 port ("{port}" in argv items is replaced),
                 waits until the port accepts, stops it after the test.
  datakit_server factory: ``datakit_server(*extra_args)`` =
                 ``python -m datakit serve --listen-9p tcp://127.0.0.1:PORT *extra_args``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import vm9p  # noqa: E402

SCRIPTS = HERE / "scripts"
GuestResult = vm9p.GuestResult

# Protocol versions the kernel tests cover.  None = no version= mount option
# (the kernel's default, 9P2000.L): `mount -t 9p -o trans=tcp,port=P HOST /db`.
ALL_VERSIONS = ["9p2000", "9p2000.u", "9p2000.L", None]


def version_id(v: str | None) -> str:
    return v if v else "no-version"


class VM:
    """Handle returned by the ``vm`` fixture."""

    def __init__(self, info: dict):
        self.info = info

    def run(
        self,
        script: str | bytes,
        *,
        port: int,
        version: str | None = "9p2000.L",
        opts: str = "",
        timeout: float = 240,  # under pytest's 300 s; TCG on a loaded host is slow
        no_mount: bool = False,
        **kw,
    ) -> GuestResult:
        """See vm9p.run_guest_script.  version=None: no version= option."""
        return vm9p.run_guest_script(
            script, port=port, version=version, opts=opts, timeout=timeout, no_mount=no_mount, **kw
        )

    __call__ = run

    def run_file(self, name: str, **kw) -> GuestResult:
        """Run tests/kernel/scripts/NAME."""
        return self.run((SCRIPTS / name).read_bytes(), **kw)


@pytest.fixture(scope="session")
def vm() -> VM:
    t0 = time.monotonic()
    try:
        info = vm9p.prepare_environment()
    except vm9p.HarnessError as e:
        pytest.fail(
            "kernel 9p tests need qemu-system-x86 and a Debian kernel + busybox-static "
            "(downloaded with apt-get into $VM9P_CACHE or ~/.cache/vm9p); preparing them "
            f"failed: {e}\nRun .ci/run as root on Debian 12, or: apt-get install "
            "qemu-system-x86 busybox-static && python tests/kernel/vm9p.py --prepare",
            pytrace=False,
        )
    except Exception as e:  # any failure here must fail, not skip
        pytest.fail(f"preparing the vm9p cache failed: {type(e).__name__}: {e}", pytrace=False)
    info["prepare_s"] = round(time.monotonic() - t0, 2)
    return VM(info)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, argv: list[str], port: int, proc: subprocess.Popen, log: Path):
        self.argv, self.port, self.proc, self.log_path = argv, port, proc, log
        self.stopped = False

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe(self) -> str:
        tail = self.output()[-4000:]
        st = "running" if self.alive() else f"exited with {self.proc.returncode}"
        return (
            f"server `{' '.join(self.argv)}` ({st}) on 127.0.0.1:{self.port}\n"
            f"--- server output (tail) ---\n{tail}"
        )

    def stop(self, timeout: float = 5) -> int | None:
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def _wait_accepting(srv: ServerProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_server(
    argv: Sequence[str] | Callable[[int], Sequence[str]],
    log: Path,
    *,
    ready_timeout: float = 30,
    env: dict | None = None,
    cwd: str | os.PathLike | None = None,
) -> ServerProcess:
    """Start a 9p server on a free 127.0.0.1 port.  argv: a list whose items may
    contain "{port}", or a function port -> argv.  Returns once the port accepts
    TCP connections (a connect + close is used as the probe).  Raises
    pytest.fail.Exception if it exits or does not listen in time."""
    last = None
    for _attempt in range(3):
        port = free_port()
        cmd = (
            [str(a) for a in argv(port)]
            if callable(argv)
            else [str(a).replace("{port}", str(port)) for a in argv]
        )
        with open(log, "wb") as logf:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        srv = ServerProcess(cmd, port, proc, log)
        if _wait_accepting(srv, ready_timeout):
            return srv
        last = srv.describe()
        srv.stop()
        if "in use" not in srv.output():  # only a port race is retried
            break
    pytest.fail(
        f"9p server did not start listening within {ready_timeout}s:\n{last}", pytrace=False
    )


@pytest.fixture
def ninep_server(tmp_path_factory):
    """Factory: ninep_server(argv, *, ready_timeout=30, env=None, cwd=None,
    check_alive=True) -> ServerProcess (.port, .proc, .output(), .describe()).
    Servers are stopped (SIGTERM, then SIGKILL) after the test; with
    check_alive the test errors if the server died on its own meanwhile."""
    started: list[tuple[ServerProcess, bool]] = []

    def start(argv, *, ready_timeout: float = 30, env=None, cwd=None, check_alive=True):
        d = tmp_path_factory.mktemp("ninep-server")
        srv = start_server(argv, d / "server.log", ready_timeout=ready_timeout, env=env, cwd=cwd)
        started.append((srv, check_alive))
        return srv

    yield start
    crashed = []
    for srv, check in started:
        if check and not srv.stopped and not srv.alive():
            crashed.append(srv.describe())
        srv.stop()
    if crashed:
        pytest.fail("9p server died during the test:\n" + "\n".join(crashed), pytrace=False)


def datakit_argv(*extra_args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "datakit",
        "serve",
        "--listen-9p",
        "tcp://127.0.0.1:{port}",
        *extra_args,
    ]


@pytest.fixture
def datakit_server(ninep_server):
    """Factory: datakit_server(*extra_args, **ninep_server_kwargs) starts
    `python -m datakit serve --listen-9p tcp://127.0.0.1:PORT *extra_args`."""

    def start(*extra_args: str, **kw) -> ServerProcess:
        return ninep_server(datakit_argv(*extra_args), **kw)

    return start


def diod_argv(export: str | os.PathLike) -> list[str]:
    """diod (reference C server, 9P2000.L only) exporting `export`, no auth.
    Mount it with opts=f"aname={export}".  -c /dev/null ignores /etc/diod.conf."""
    return [
        "diod",
        "-f",
        "-n",
        "-c",
        "/dev/null",
        "-L",
        "stderr",
        "-l",
        "127.0.0.1:{port}",
        "-e",
        str(export),
    ]


def assert_guest_ok(res: GuestResult, server: ServerProcess | None = None) -> None:
    if res.ok:
        return
    msg = res.describe()
    if server is not None:
        msg += "\n" + server.describe()
    pytest.fail(msg, pytrace=False)
