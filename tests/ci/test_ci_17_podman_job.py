"""CI-17: a job with `image` runs inside a podman container, with the checkout
of the exact commit mounted at /src and no network unless the job asks.

Needs root and podman configured by scripts/container-setup.sh (scripts/test
runs it first; this test runs it too when the stand-in base image is
missing). A missing podman is a failure, not a skip, as in tests/container.
The job's image is built here, once (cached by a label over its inputs),
from the stand-in base image: no registry is reachable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from datakit.ci.livelog import LiveLog
from datakit.ci.mirror import Mirror
from datakit.ci.model import JobSpec
from datakit.ci.runner import RunOutcome, describe, run_job
from datakit.github.model import RefId, Repo
from tests.container.podman import (
    Podman,
    ready_podman,
)
from tests.gitrepo import git

BASE = "localhost/datakit-base-standin:bookworm"
IMAGE = "localhost/datakit-ci-test:latest"
INPUTS_LABEL = "datakit-ci-test.inputs"
MARKER = "built for the CI-17 test\n"
CONTAINERFILE = f"""\
FROM {BASE}
COPY marker /etc/datakit-ci-test
"""
README = "CI-17: this text is in the checkout of the tested commit\n"
REPO = Repo("me", "p")


def _podman() -> Podman:
    return ready_podman(BASE, "the podman job test")


@pytest.fixture(scope="module")
def ci_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small image built from the stand-in base; rebuilt only when its
    inputs (this Containerfile, the marker, the base image) change."""
    pm = _podman()
    digest = hashlib.sha256(f"{CONTAINERFILE}\0{MARKER}\0{pm.image_id(BASE)}".encode()).hexdigest()[
        :32
    ]
    if pm.label(IMAGE, INPUTS_LABEL) != digest:
        context = tmp_path_factory.mktemp("ci-image")
        (context / "Containerfile").write_text(CONTAINERFILE)
        (context / "marker").write_text(MARKER)
        pm.run(
            "build", "--pull=never", "--network=none",
            "--label", f"{INPUTS_LABEL}={digest}",
            "-t", IMAGE, "-f", str(context / "Containerfile"), str(context),
            timeout=600,
        )  # fmt: skip
    yield IMAGE


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    work = tmp_path / "src"
    git(None, "init", "-q", "-b", "master", str(work))
    (work / "README").write_text(README)
    git(work, "add", "README")
    git(work, "commit", "-q", "-m", "m1")
    return Mirror(tmp_path / "ci", REPO, str(work))


async def run_in_checkout(mirror: Mirror, job: JobSpec) -> tuple[RunOutcome, str]:
    sha = git(Path(mirror.source), "rev-parse", "HEAD")
    log = LiveLog()
    with trio.fail_after(180):
        await mirror.ensure(sha, RefId(REPO, ("heads", "master")))
        async with mirror.checkout(sha) as path:
            outcome = await run_job(job, path, {"DATAKIT_CI_COMMIT": sha}, log)
    log.close()
    return outcome, log.snapshot().decode(errors="replace")


def interfaces(output: str) -> list[str]:
    """The interface names of a /proc/net/dev listing."""
    return sorted(
        line.split(":")[0].strip()
        for line in output.splitlines()
        if ":" in line and line.split(":")[0].strip().isidentifier()
    )


async def test_ci_17_podman_job(ci_image: str, mirror: Mirror) -> None:
    job = JobSpec(
        "podman",
        "cat /src/README; cat /etc/datakit-ci-test; echo commit=$DATAKIT_CI_COMMIT CI=$CI;"
        " cat /proc/net/dev",
        image=ci_image,
    )
    outcome, output = await run_in_checkout(mirror, job)
    assert outcome.exit_status == 0, output
    assert describe(job, outcome) == ("podman passed", None)
    assert README in output  # the checkout, mounted at /src
    assert MARKER in output  # inside our image, not on the host
    sha = git(Path(mirror.source), "rev-parse", "HEAD")
    assert f"commit={sha} CI=true" in output
    assert interfaces(output) == ["lo"]  # no network by default


async def test_ci_17_network_on_request(ci_image: str, mirror: Mirror) -> None:
    """The no-network check above can fail: with network = "host" the
    container sees the host's interfaces."""
    job = JobSpec("net", ("cat", "/proc/net/dev"), image=ci_image, network="host")
    outcome, output = await run_in_checkout(mirror, job)
    assert outcome.exit_status == 0, output
    host = sorted(p for p in os.listdir("/sys/class/net"))
    assert interfaces(output) == host


async def test_ci_17_failure_and_timeout_remove_the_container(
    ci_image: str, mirror: Mirror
) -> None:
    pm = Podman()
    outcome, output = await run_in_checkout(
        mirror, JobSpec("fails", "echo in-container; exit 4", image=ci_image)
    )
    assert outcome.exit_status == 4 and "in-container" in output
    unique = f"{os.getpid()}.{int.from_bytes(os.urandom(2), 'big')}"
    job = JobSpec("sleeps", ("sleep", f"1{unique}"), image=ci_image, timeout=2)
    outcome, output = await run_in_checkout(mirror, job)
    assert outcome.timed_out, output
    assert describe(job, outcome)[0] == "timed out after 2 s"
    commands = pm.out("ps", "-a", "--no-trunc", "--format", "{{.Command}}")
    assert unique not in commands


async def test_ci_17_cancelled_podman_job_leaves_no_container(
    ci_image: str, mirror: Mirror
) -> None:
    """A superseded image job: cancelling run_job removes its container."""
    pm = Podman()
    unique = f"{os.getpid()}.{int.from_bytes(os.urandom(2), 'big')}"
    job = JobSpec("sleeps", ("sleep", f"2{unique}"), image=ci_image)

    def listed() -> bool:
        commands = pm.out("ps", "-a", "--no-trunc", "--format", "{{.Command}}")
        return unique in commands

    async def cancel_when_running(scope: trio.CancelScope) -> None:
        while not await trio.to_thread.run_sync(listed):
            await trio.sleep(0.2)
        scope.cancel()

    sha = git(Path(mirror.source), "rev-parse", "HEAD")
    await mirror.ensure(sha)
    raised: list[BaseException] = []
    with trio.fail_after(120):
        async with mirror.checkout(sha) as path:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_when_running, scope)
                    try:
                        await run_job(job, path, {}, LiveLog())
                    except BaseException as exc:
                        raised.append(exc)
                        raise
    assert scope.cancelled_caught
    assert len(raised) == 1 and isinstance(raised[0], trio.Cancelled)
    assert not listed()
