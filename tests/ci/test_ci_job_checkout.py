"""Spec B.4, end to end: a job runs in a clean checkout of exactly the
commit under test (its README, `git rev-parse HEAD`, nothing else in the
directory), with `CI=true`, `DATAKIT_CI_COMMIT`, `DATAKIT_CI_TARGET` and the
job's `env`; the checkout is gone afterwards."""

from __future__ import annotations

from pathlib import Path

from tests.ci.cihelpers import CIStack, read, result_branches

SCRIPT = (
    "echo README=$(cat README); echo HEAD=$(git rev-parse HEAD); echo PWD=$PWD; "
    "echo CI=$CI; echo COMMIT=$DATAKIT_CI_COMMIT; echo TARGET=$DATAKIT_CI_TARGET; "
    "echo GREETING=$GREETING; echo FILES=$(ls -A | grep -v '^.git$' | tr '\\n' ' '); "
    "echo DIRTY=$(git status --porcelain | wc -l); touch left-behind"
)


def fields(log: bytes) -> dict[str, str]:
    out = {}
    for line in log.decode().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value.strip()
    return out


def test_ci_job_runs_in_a_clean_checkout_of_the_commit(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "env", "run": SCRIPT, "env": {"GREETING": "hello there"}}])
    stack.start()
    stack.wait_status(m1, "env", "success")
    m2 = stack.commit("m2")
    stack.wait_status(m2, "env", "success")
    for sha, readme in ((m1, "m1"), (m2, "m2")):
        (branch,) = result_branches(stack.conn, "env", sha)
        head = stack.conn.branch(branch).head()
        assert head is not None
        got = fields(read(head.tree(), "log") or b"")
        assert got["README"] == readme, got
        assert got["HEAD"] == sha and got["COMMIT"] == sha, got
        assert got["CI"] == "true", got
        assert got["TARGET"] == "me/p/heads/master", got
        assert got["GREETING"] == "hello there", got
        assert got["FILES"] == "README", got  # the previous run's file is not there
        assert got["DIRTY"] == "0", got
        checkout = Path(got["PWD"])
        assert checkout.is_absolute() and not checkout.exists(), checkout
        assert checkout != stack.repo
