"""run_job with real processes: exit codes, interleaved output, environment,
timeouts, cancellation, processes that outlive the job, binary junk and
megabytes of output; and the podman command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from datakit.ci.livelog import DEFAULT_CAP, LiveLog, truncation_note
from datakit.ci.model import JobSpec
from datakit.ci.runner import (
    COOKIE_VAR,
    RunOutcome,
    describe,
    podman_command,
    podman_environment,
    run_job,
)


async def run(
    job: JobSpec, workdir: Path, env: dict[str, str] | None = None
) -> tuple[RunOutcome, bytes]:
    log = LiveLog()
    with trio.fail_after(60):
        outcome = await run_job(job, workdir, env or {}, log)
    log.close()
    return outcome, log.snapshot()


def alive(pid: int) -> bool:
    """Running, or not yet a zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def group_members(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                data = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = data[data.rindex(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                out.append(int(name))
    return out


async def wait_until_dead(pids: list[int]) -> list[int]:
    """The pids still alive after a generous wait (killed processes take a
    moment to become zombies)."""
    with trio.move_on_after(10):
        while any(alive(p) for p in pids):
            await trio.sleep(0.05)
    return [p for p in pids if alive(p)]


async def test_passes(tmp_path: Path) -> None:
    job = JobSpec("ok", ("true",))
    outcome, output = await run(job, tmp_path)
    assert outcome.exit_status == 0 and not outcome.timed_out
    assert outcome.duration >= 0
    assert output == b""
    assert describe(job, outcome) == ("ok passed", None)


async def test_failure_with_exit_code(tmp_path: Path) -> None:
    job = JobSpec("bad", "echo boom; exit 3")
    outcome, output = await run(job, tmp_path)
    assert outcome.exit_status == 3
    assert output == b"boom\n"
    assert describe(job, outcome) == ("bad failed: exit 3", "bad failed: exit 3")


async def test_stdout_and_stderr_interleaved(tmp_path: Path) -> None:
    job = JobSpec("mix", "echo out1; echo err1 >&2; echo out2; echo err2 >&2")
    _, output = await run(job, tmp_path)
    assert output == b"out1\nerr1\nout2\nerr2\n"


async def test_environment_cwd_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_OF_THE_CI", "do-not-leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    job = JobSpec(
        "env",
        "pwd; cat; echo stdin-closed; env",
        env=(("FROM_JOB", "j"), ("OVERRIDDEN", "by-job")),
    )
    outcome, output = await run(
        job, tmp_path, {"DATAKIT_CI_COMMIT": "abc", "OVERRIDDEN": "by-engine"}
    )
    assert outcome.exit_status == 0
    lines = output.decode().splitlines()
    assert lines[0] == str(tmp_path)
    assert lines[1] == "stdin-closed"  # cat read /dev/null: no hang
    env = dict(line.split("=", 1) for line in lines[2:] if "=" in line)
    assert env["CI"] == "true"
    assert env["FROM_JOB"] == "j"
    assert env["OVERRIDDEN"] == "by-engine"
    assert env["DATAKIT_CI_COMMIT"] == "abc"
    assert env["LANG"] == "C.UTF-8"
    assert env["PATH"] == os.environ["PATH"]
    assert COOKIE_VAR in env
    assert "SECRET_OF_THE_CI" not in env


async def test_timeout_kills_the_group(tmp_path: Path) -> None:
    """CI-10 at the runner's level: `sleep 30` with timeout 1 ends as timed
    out, and nothing of its group survives."""
    job = JobSpec("slow", "echo $$ > pid; sleep 30 & sleep 30", timeout=1)
    outcome, output = await run(job, tmp_path)
    assert outcome.timed_out
    assert describe(job, outcome) == ("timed out after 1 s", "timed out after 1 s")
    assert b"[datakit-ci: timed out after 1 s]" in output
    pgid = int((tmp_path / "pid").read_text())
    assert await wait_until_dead([pgid]) == []
    assert group_members(pgid) == []


async def test_timeout_escalates_to_sigkill(tmp_path: Path) -> None:
    job = JobSpec("stubborn", 'echo $$ > pid; trap "" TERM; sleep 60', timeout=1)
    outcome, _ = await run(job, tmp_path)
    assert outcome.timed_out
    assert outcome.exit_status == -9  # SIGTERM was ignored
    assert group_members(int((tmp_path / "pid").read_text())) == []


async def test_children_that_outlive_the_job_are_killed(tmp_path: Path) -> None:
    """A job that leaves `sleep 100 &` behind (holding the output pipe), and
    a daemon that left the group with setsid and closed its output: run_job
    returns (long before 100 s) and neither survives."""
    job = JobSpec(
        "forks",
        "echo $$ > pid; sleep 100 & echo $! > bg;"
        " setsid sleep 100 >/dev/null 2>&1 </dev/null & echo $! > daemon; echo started",
    )
    outcome, output = await run(job, tmp_path)
    assert outcome.exit_status == 0
    assert output == b"started\n"
    pids = [int((tmp_path / name).read_text()) for name in ("bg", "daemon")]
    assert await wait_until_dead(pids) == []
    assert group_members(int((tmp_path / "pid").read_text())) == []


async def test_cancellation_kills_and_reraises(tmp_path: Path) -> None:
    """A superseded run: the whole group is killed and run_job raises a
    plain trio.Cancelled (not an exception group), so the engine's
    ``except trio.Cancelled`` sees it."""
    job = JobSpec("cancelled", "echo $$ > pid; sleep 100 & echo $! > bg; sleep 100")
    log = LiveLog()
    raised: list[BaseException] = []

    async def cancel_when_started(scope: trio.CancelScope) -> None:
        while not (tmp_path / "bg").exists() or not (tmp_path / "bg").read_text():
            await trio.sleep(0.05)
        scope.cancel()

    with trio.fail_after(60):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_started, scope)
                try:
                    await run_job(job, tmp_path, {}, log)
                except BaseException as exc:
                    raised.append(exc)
                    raise
    assert scope.cancelled_caught
    assert len(raised) == 1 and isinstance(raised[0], trio.Cancelled), raised
    pgid = int((tmp_path / "pid").read_text())
    assert await wait_until_dead([pgid, int((tmp_path / "bg").read_text())]) == []
    assert group_members(pgid) == []


async def test_log_closed_under_a_running_job(tmp_path: Path) -> None:
    """The caller may close the log early (it owns it): the job still ends
    normally, its further output is dropped."""
    log = LiveLog()
    log.close()
    with trio.fail_after(60):
        outcome = await run_job(JobSpec("late", "echo after close"), tmp_path, {}, log)
    assert outcome.exit_status == 0
    assert log.snapshot() == b""


async def test_binary_junk_is_kept_as_bytes(tmp_path: Path) -> None:
    junk = os.urandom(300_000) + bytes(range(256))
    (tmp_path / "junk").write_bytes(junk)
    outcome, output = await run(JobSpec("junk", ("cat", "junk")), tmp_path)
    assert outcome.exit_status == 0
    assert output == junk


async def test_megabytes_of_output_stay_capped(tmp_path: Path) -> None:
    total = 20_000_000
    job = JobSpec("loud", f"head -c {total} /dev/zero; echo; echo the end")
    log = LiveLog()
    with trio.fail_after(120):
        outcome = await run_job(job, tmp_path, {}, log)
    assert outcome.exit_status == 0
    assert log.size == DEFAULT_CAP  # kept: the cap, no more
    dropped = total + len(b"\nthe end\n") - DEFAULT_CAP
    assert log.dropped == dropped
    log.close()
    assert log.snapshot().endswith(truncation_note(dropped))
    assert log.size == DEFAULT_CAP + len(truncation_note(dropped))


async def test_missing_command_fails_like_a_shell(tmp_path: Path) -> None:
    job = JobSpec("missing", ("/nonexistent/command",))
    outcome, output = await run(job, tmp_path)
    assert outcome.exit_status == 127
    assert b"/nonexistent/command" in output
    assert describe(job, outcome)[0] == "missing failed: exit 127"
    outcome, output = await run(JobSpec("nodir", ("true",)), tmp_path / "gone")
    assert outcome.exit_status == 127
    assert output == f"datakit-ci: no working directory {tmp_path / 'gone'}\n".encode()


async def test_killed_by_a_signal(tmp_path: Path) -> None:
    job = JobSpec("sig", "kill -9 $$")
    outcome, _ = await run(job, tmp_path)
    assert outcome.exit_status == -9
    assert describe(job, outcome) == ("killed by signal 9", "killed by signal 9")


def test_describe_timeouts() -> None:
    assert describe(JobSpec("a", "x", timeout=2.0), RunOutcome(-15, True, 2.1))[0] == (
        "timed out after 2 s"
    )
    assert describe(JobSpec("a", "x", timeout=2.5), RunOutcome(-9, True, 7.6))[0] == (
        "timed out after 2.5 s"
    )


def test_podman_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = tmp_path / "mirror.git" / "objects"
    objects.mkdir(parents=True)
    checkout = tmp_path / "checkout"
    (checkout / ".git" / "objects" / "info").mkdir(parents=True)
    (checkout / ".git" / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    monkeypatch.setenv("SECRET_OF_THE_CI", "do-not-leak")
    job = JobSpec("c", ("cat", "/src/README"), image="localhost/img", env=(("K", "secret"),))
    argv, env = podman_command(job, checkout, {"DATAKIT_CI_COMMIT": "abc"}, "datakit-ci-x")
    assert argv[:3] == ["podman", "run", "--rm"]
    assert "--network=none" in argv
    assert argv[argv.index("-v") + 1] == f"{checkout}:/src"
    assert f"{objects}:{objects}:ro" in argv
    assert argv[argv.index("-w") + 1] == "/src"
    assert argv[argv.index("--name") + 1] == "datakit-ci-x"
    assert argv[-3:] == ["localhost/img", "cat", "/src/README"]
    assert "secret" not in " ".join(argv)  # values travel in podman's environment
    names = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert set(names) == {"CI", "K", "DATAKIT_CI_COMMIT"}  # not the host's PATH/HOME/LANG
    assert env["K"] == "secret" and env["CI"] == "true" and env["DATAKIT_CI_COMMIT"] == "abc"
    assert "SECRET_OF_THE_CI" not in env
    net = JobSpec("n", "true", image="img", network="host")
    assert "--network=host" in podman_command(net, checkout, {}, "y")[0]


def test_podman_environment_from_env_sh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "env.sh").write_text(
        f"export DATAKIT_CONTAINER_DIR={tmp_path}\n"
        f"export CONTAINERS_CONF={tmp_path}/containers.conf\n"
        f"export CONTAINERS_STORAGE_CONF={tmp_path}/storage.conf\n"
        f"export TMPDIR={tmp_path}/tmp\n"
        "export SOMETHING_ELSE=x\n"
    )
    monkeypatch.setenv("DATAKIT_CONTAINER_DIR", str(tmp_path))
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", "/explicit/storage.conf")
    env = podman_environment()
    assert env["CONTAINERS_CONF"] == f"{tmp_path}/containers.conf"
    assert env["CONTAINERS_STORAGE_CONF"] == "/explicit/storage.conf"  # explicit wins
    assert env["TMPDIR"] == f"{tmp_path}/tmp"
    assert "SOMETHING_ELSE" not in env
    monkeypatch.setenv("DATAKIT_CONTAINER_DIR", str(tmp_path / "missing"))
    monkeypatch.delenv("CONTAINERS_STORAGE_CONF")
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    assert "CONTAINERS_CONF" not in podman_environment()
