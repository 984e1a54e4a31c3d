"""Regression tests of the review's CI bugs that need real `datakit ci`
processes (fixed in b51c9f2): what a kill -9 leaves, SIGTERM while the
database is down, the owner claim after an in-memory database restart, and
a --metadata-store that is not a 9p server. github-metadata is written
directly, as the local bridge would (no bridge process: faster, and the
database restart stays under the test's control). The review's bug number
is in each docstring."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datakit.client import connect
from tests.ci.cihelpers import CIProcess, CIStack, ci_env, ci_stack_on, wait_until
from tests.ci.enginehelpers import Meta, port_of, server_process

OK_JOB = {"name": "ok", "run": "true"}
OWNER_BRANCH = "datakit-ci-owner"  # datakit/ci/owner.py: where the claim lives


@contextmanager
def stack_with_meta(tmp: Path, address: str) -> Iterator[tuple[CIStack, Meta]]:
    """The CI stack (no bridge) on ``address`` and a github-metadata writer."""
    with ci_stack_on(tmp, address, bridge=False) as stack:
        meta = Meta(address)
        try:
            yield stack, meta
        finally:
            meta.close()


def args_with_workdir(stack: CIStack, workdir: Path) -> list[str]:
    """The stack's CI arguments with another --workdir (two CIs cannot
    share one)."""
    args = stack.ci_args()
    args[args.index("--workdir") + 1] = str(workdir)
    return args


def test_kill9_leaves_no_stray_job(tmp_path: Path) -> None:
    """Bug 9: after kill -9 of the CI while a job runs, the restarted CI
    re-runs the job (CI-7) but the old job kept running next to it."""
    with (
        server_process() as (address, _server),
        stack_with_meta(tmp_path, address) as (stack, meta),
    ):
        mark = stack.marker()
        stack.configure(
            [{"name": "slow", "run": stack.counting("slow", f"exec -a {mark} sleep 60")}]
        )
        meta.set_ref("heads/master", stack.m1)
        stack.start()
        old = stack.wait_marker(mark)
        stack.kill()
        stack.start()
        wait_until(lambda: stack.runs_of("slow") == 2, "the job run again", why=stack.why)
        stack.wait_gone(old, "the killed CI's job", timeout=10)


def test_sigterm_with_the_database_down(tmp_path: Path) -> None:
    """Bug 8: a job finished while the database was down; storing its
    result was shielded and retried forever, so SIGTERM was ignored."""
    with server_process() as (address, server), stack_with_meta(tmp_path, address) as (stack, meta):
        mark = stack.marker()
        stack.configure([{"name": "slow", "run": ["bash", "-c", f"exec -a {mark} sleep 3"]}])
        meta.set_ref("heads/master", stack.m1)
        ci = stack.start()
        job = stack.wait_marker(mark)
        server.kill()  # the database goes away while the job runs
        server.wait()
        stack.wait_gone(job, "the job ending")
        wait_until(lambda: "lost the metadata store" in ci.log, "the CI noticing", why=stack.why)
        time.sleep(1)  # the CI is now trying to store the job's result
        stack.stop()  # SIGTERM: exit 0 (fails if still running after 30 s)


def test_claim_survives_memory_database_restart(tmp_path: Path) -> None:
    """Bug 10: the owner claim was written once at start; after an
    in-memory database restarted, the running CI reconnected without it,
    so a second CI on the same database started too."""
    with server_process() as (address, first), stack_with_meta(tmp_path, address) as (stack, meta):
        stack.configure([OK_JOB])
        meta.set_ref("heads/master", stack.m1)
        ci = stack.start()
        stack.wait_status(stack.m1, "ok", "success")
        first.kill()  # the database restarts empty, on the same port
        first.wait()
        with server_process(port_of(address)):
            wait_until(lambda: "reconnected" in ci.log, "the CI reconnecting", why=ci.tail)

            def claimed() -> bool:
                with connect(address, timeout=30) as conn:
                    head = conn.branch(OWNER_BRANCH).head()
                    return head is not None and head.tree().exists("owner")

            wait_until(claimed, "the claim written again", why=ci.tail)
            second = CIProcess(args_with_workdir(stack, tmp_path / "w2"), tmp_path / "ci-2.log")
            stack.runs.append(second)  # stopped by the stack's clean-up if it started
            wait_until(
                lambda: second.proc.poll() is not None or second.web,
                "the second CI exiting or starting",
            )
            assert second.wait_exit() == 1, second.log
            assert "another DataKitCI is running" in second.log, second.log
            assert ci.proc.poll() is None, ci.tail()
            stack.stop()


def run_ci(tmp: Path, store: str, timeout: float) -> subprocess.CompletedProcess[str]:
    source = tmp / "p"
    if not source.exists():
        from tests.ci.cihelpers import make_source_repo

        make_source_repo(source)
    config = tmp / "ci.toml"
    config.write_text(
        f'[[project]]\nrepo = "me/p"\nsource = "{source}"\n'
        '[[project.job]]\nname = "ok"\nrun = "true"\n'
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "datakit",
            "ci",
            "--config",
            str(config),
            "--metadata-store",
            store,
            "--listen",
            "127.0.0.1:0",
            "--workdir",
            str(tmp / "w"),
        ],
        capture_output=True,
        text=True,
        env=ci_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_cli_store_is_an_http_port(tmp_path: Path) -> None:
    """Bug 11: a --metadata-store that speaks HTTP (the server's own
    Prometheus port, an easy mistake) gave a traceback."""
    from tests.operations.procs import datakit_process

    with datakit_process() as (_port, metrics, _proc):
        result = run_ci(tmp_path, f"tcp:127.0.0.1:{metrics}", timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_store_never_answers(tmp_path: Path) -> None:
    """Bug 11: a --metadata-store that accepts and never answers: the CI
    waited forever; now one line and exit 1 after the request timeout
    (30 s)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        try:
            result = run_ci(tmp_path, f"tcp:127.0.0.1:{listener.getsockname()[1]}", timeout=90)
        except subprocess.TimeoutExpired:
            raise AssertionError("datakit ci still waiting for the store after 90 s") from None
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
