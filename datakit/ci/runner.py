"""Running one job in a checkout: a plain command in its own process group,
or the command inside a podman container (spec ci.md B.4).

* The command gets ``/dev/null`` as stdin and one pipe for stdout and stderr
  (so the log interleaves them as a terminal would), read in chunks into a
  :class:`~datakit.ci.livelog.LiveLog` (capped there, so a job printing
  megabytes costs no more memory than the cap; bytes are kept as they are).
* Environment: ``PATH``, ``HOME`` and ``LANG`` of the CI process (nothing
  else of it: no tokens leak into jobs), ``CI=true``, the job's ``env``,
  then the caller's (the engine's ``DATAKIT_CI_TARGET``,
  ``DATAKIT_CI_COMMIT``).
* A plain job runs in a new session (``start_new_session``), so it and its
  children form one process group. The job's environment also carries a
  random ``DATAKIT_CI_JOB`` cookie: when the main process exits (or is
  killed) the group is killed, and so is every process whose environment
  carries the cookie, which catches daemons that left the group with
  ``setsid`` (Jenkins' ProcessTreeKiller does the same). A job that runs
  ``sleep 100 &`` leaves nothing behind.
* Timeout: SIGTERM to the group; SIGKILL after :data:`KILL_GRACE` seconds;
  ``timed_out`` in the outcome. Cancellation (a superseded run): SIGKILL at
  once, shielded, the processes reaped, and the ``Cancelled`` re-raised.
* ``image`` jobs run ``podman run --rm --network=<network or none> -v
  <checkout>:/src -w /src --name datakit-ci-<cookie> IMAGE argv``; the
  checkout's git alternates (the mirror's objects) are mounted read-only at
  the same path so ``git`` works inside. Environment variables are passed
  by name (``-e NAME``, the value taken from podman's own environment), so
  their values are not on a command line. On timeout, cancellation and
  exit the named container is removed with ``podman rm -f``. podman's
  configuration is that of ``scripts/container-setup.sh``: the variables of
  ``$DATAKIT_CONTAINER_DIR/env.sh`` (default ``/var/tmp/datakit-containers``)
  when that file exists.

The caller owns the LiveLog: :func:`run_job` writes to it but does not close
it (the engine may add its own lines before saving it).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import trio

from datakit.ci.livelog import LiveLog
from datakit.ci.model import JobSpec

log = logging.getLogger("datakit.ci.runner")

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL on a timeout
# After the job's processes are gone, how long the pipe may stay open (held
# by a process we could not find) before we stop reading it.
PIPE_GRACE = 5.0
READ_SIZE = 64 << 10
COOKIE_VAR = "DATAKIT_CI_JOB"
PASSED_THROUGH = ("PATH", "HOME", "LANG")
DEFAULT_CONTAINER_DIR = "/var/tmp/datakit-containers"
# What scripts/container-setup.sh's env.sh may set for podman.
PODMAN_CONFIG_VARS = (
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "TMPDIR",
)
CONTAINER_LABEL = "datakit-ci=job"


@dataclass(frozen=True)
class RunOutcome:
    """How a job ended. ``exit_status`` is the process's return code as
    Python reports it (negative: killed by that signal; 127 when the command
    could not be started, as a shell says); None means unknown (run_job
    always gives one). ``duration`` in seconds."""

    exit_status: int | None
    timed_out: bool
    duration: float


def _seconds(value: float) -> str:
    return f"{value:g}"


def describe(job: JobSpec, outcome: RunOutcome) -> tuple[str, str | None]:
    """(status description, failure message or None) in spec B.3's words."""
    if outcome.timed_out:
        text = f"timed out after {_seconds(job.timeout)} s"
    elif outcome.exit_status == 0:
        return f"{job.name} passed", None
    elif outcome.exit_status is None:
        text = f"{job.name} failed: did not run"
    elif outcome.exit_status < 0:
        text = f"killed by signal {-outcome.exit_status}"
    else:
        text = f"{job.name} failed: exit {outcome.exit_status}"
    return text, text


def job_environment(job: JobSpec, env: dict[str, str]) -> dict[str, str]:
    """What the job's command sees (inside a container: all but the first
    three, which come from the image)."""
    out = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    out.setdefault("PATH", os.defpath)
    out["CI"] = "true"
    out.update(dict(job.env))
    out.update(env)
    return out


def podman_environment() -> dict[str, str]:
    """podman's own environment: the CI's basics plus the configuration of
    scripts/container-setup.sh when it has been run (explicitly set
    ``CONTAINERS_*`` variables win)."""
    env = {
        k: os.environ[k]
        for k in (*PASSED_THROUGH, "XDG_RUNTIME_DIR", *PODMAN_CONFIG_VARS)
        if k in os.environ
    }
    env.setdefault("PATH", os.defpath)
    folder = Path(os.environ.get("DATAKIT_CONTAINER_DIR", DEFAULT_CONTAINER_DIR))
    try:
        lines = (folder / "env.sh").read_text().splitlines()
    except OSError:
        return env
    for line in lines:
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep or name not in PODMAN_CONFIG_VARS:
            continue
        if name == "TMPDIR" or name not in os.environ:
            env[name] = value.strip().strip("'\"")
    return env


def _alternates(checkout: Path) -> list[Path]:
    """Object directories a checkout borrows from (the mirror's)."""
    try:
        text = (checkout / ".git" / "objects" / "info" / "alternates").read_text()
    except OSError:
        return []
    out: list[Path] = []
    for line in text.splitlines():
        path = Path(line.strip())
        if path.is_absolute() and path.is_dir():
            out.append(path)
    return out


def podman_command(
    job: JobSpec, workdir: Path, env: dict[str, str], container: str
) -> tuple[list[str], dict[str, str]]:
    """The ``podman run`` argv and podman's environment for an image job."""
    assert job.image is not None
    inner = job_environment(job, env)
    for name in PASSED_THROUGH:
        if name not in dict(job.env) and name not in env:
            inner.pop(name, None)  # the image's own PATH, HOME, LANG
    argv = [
        "podman", "run", "--rm",
        f"--network={job.network or 'none'}",
        "-v", f"{workdir.resolve()}:/src",
        "-w", "/src",
        "--name", container,
        "--label", CONTAINER_LABEL,
    ]  # fmt: skip
    for path in _alternates(workdir):
        argv += ["-v", f"{path}:{path}:ro"]
    for name in inner:
        argv += ["-e", name]
    argv += ["--", job.image, *job.argv]
    penv = podman_environment()
    penv.update(inner)
    return argv, penv


# --- processes -------------------------------------------------------------------


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - a member changed user (setuid)
        log.warning("cannot signal process group %d", pgid)


def _stat(pid: str) -> tuple[str, int] | None:
    """(state letter, process group) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2])


def _has_cookie(pid: str, cookie: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return cookie in f.read().split(b"\0")
    except OSError:
        return False


def _leftovers(pgid: int, cookie: str | None) -> list[int]:
    """Live (not zombie) processes of the job: in its group, or carrying its
    cookie."""
    marker = f"{COOKIE_VAR}={cookie}".encode() if cookie else None
    me = os.getpid()
    found: list[int] = []
    try:
        names: Iterable[str] = os.listdir("/proc")
    except OSError:  # pragma: no cover - no procfs: the group kill is all we can do
        return []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        st = _stat(name)
        if st is None or st[0] in ("Z", "X"):
            continue
        if st[1] == pgid or (marker is not None and _has_cookie(name, marker)):
            found.append(int(name))
    return found


async def _sweep(pgid: int, cookie: str | None) -> None:
    """Kill everything left of the job and wait (a little) until it is dead."""
    deadline = trio.current_time() + KILL_GRACE
    while True:
        _signal_group(pgid, signal.SIGKILL)
        pids = _leftovers(pgid, cookie)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    log.warning("cannot kill leftover process %d: %s", pid, exc)
        if trio.current_time() > deadline:
            log.warning("processes %s of a job survive SIGKILL", pids)
            return
        await trio.sleep(0.05)


def kill_leftover_jobs(name: str, value: str) -> int:
    """SIGKILL every process whose environment has ``name=value``: the jobs
    of a CI that was killed (``kill -9`` skips every cleanup) carry the CI's
    workdir in their environment, so the next start on that workdir finds
    them. Returns how many were killed. (Containers are podman's: a killed
    ``podman run`` leaves its container to ``podman rm``.)"""
    marker = f"{name}={value}".encode()
    me = os.getpid()
    killed = 0
    try:
        names = os.listdir("/proc")
    except OSError:  # pragma: no cover - no procfs
        return 0
    for pid in names:
        if not pid.isdigit() or int(pid) == me:
            continue
        st = _stat(pid)
        if st is None or st[0] in ("Z", "X") or not _has_cookie(pid, marker):
            continue
        try:
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                log.warning("cannot kill leftover process %s: %s", pid, exc)
    return killed


async def _podman_rm(container: str) -> None:
    try:
        with trio.move_on_after(60):
            result = await trio.run_process(
                ["podman", "rm", "--force", "--ignore", "--time", "0", container],
                env=podman_environment(),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            if result.returncode != 0:
                why = result.stderr.decode(errors="replace").strip()
                log.warning("podman rm %s failed: %s", container, why)
    except OSError as exc:
        log.warning("podman rm %s: %s", container, exc)


def _collapse_cancelled(exc: BaseException) -> BaseException:
    """The nursery inside run_job wraps a cancellation in an exception
    group of Cancelled; callers expect ``except trio.Cancelled`` to work, so
    a group of nothing but Cancelled becomes its first one."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if isinstance(e, BaseExceptionGroup):
            todo[:0] = list(e.exceptions)
        else:
            leaves.append(e)
    if leaves and all(isinstance(e, trio.Cancelled) for e in leaves):
        return leaves[0]
    return exc


async def _pump(stream: trio.abc.ReceiveStream, out: LiveLog, done: trio.Event) -> None:
    try:
        while data := await stream.receive_some(READ_SIZE):
            if not out.closed:  # closed under us by the caller: drain, drop
                out.write(data)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        pass
    finally:
        done.set()


async def run_job(job: JobSpec, workdir: Path, env: dict[str, str], log: LiveLog) -> RunOutcome:
    """Run ``job`` in ``workdir`` (a checkout), its output into ``log``."""
    workdir = Path(workdir)
    cookie = secrets.token_hex(8)
    container: str | None = None
    if job.image:
        container = f"datakit-ci-{cookie}"
        argv, penv = podman_command(job, workdir, env, container)
    else:
        argv = job.argv
        penv = job_environment(job, env)
        penv[COOKIE_VAR] = cookie
    started = time.monotonic()
    try:
        proc = await trio.lowlevel.open_process(
            argv,
            cwd=workdir,
            env=penv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        # A missing command is the job's failure, as in a shell.
        if not workdir.is_dir():
            why = f"datakit-ci: no working directory {workdir}\n"
        else:
            why = f"datakit-ci: cannot run {argv[0]!r}: {exc.strerror or exc}\n"
        if not log.closed:
            log.write(why.encode())
        return RunOutcome(127, False, time.monotonic() - started)
    assert proc.stdout is not None
    pgid = proc.pid  # a new session: the leader's pid is the group id
    group_cookie = None if container else cookie
    timed_out = False
    try:
        async with trio.open_nursery() as nursery:
            pumped = trio.Event()
            nursery.start_soon(_pump, proc.stdout, log, pumped)
            with trio.move_on_after(job.timeout) as scope:
                await proc.wait()
            if scope.cancelled_caught:
                timed_out = True
                _signal_group(pgid, signal.SIGTERM)
                with trio.move_on_after(KILL_GRACE):
                    await proc.wait()
                if container:
                    await _podman_rm(container)
                _signal_group(pgid, signal.SIGKILL)
                await proc.wait()
            elif container:
                await _podman_rm(container)  # --rm did it, unless podman was killed
            await _sweep(pgid, group_cookie)
            with trio.move_on_after(PIPE_GRACE):
                await pumped.wait()
            nursery.cancel_scope.cancel()
    except BaseException as exc:
        # Cancelled (a superseded run, the CI stopping) or a bug: nothing of
        # the job may survive it.
        with trio.CancelScope(shield=True):
            _signal_group(pgid, signal.SIGKILL)
            if container:
                await _podman_rm(container)
            await _sweep(pgid, group_cookie)
            await proc.wait()
        plain = _collapse_cancelled(exc)
        if plain is exc:
            raise
        raise plain from None
    finally:
        with trio.CancelScope(shield=True):
            await proc.stdout.aclose()
    duration = time.monotonic() - started
    if timed_out and not log.closed:
        log.write(f"\n[datakit-ci: timed out after {_seconds(job.timeout)} s]\n".encode())
    return RunOutcome(proc.returncode, timed_out, duration)


__all__ = [
    "COOKIE_VAR",
    "KILL_GRACE",
    "RunOutcome",
    "describe",
    "job_environment",
    "kill_leftover_jobs",
    "podman_command",
    "podman_environment",
    "run_job",
]
