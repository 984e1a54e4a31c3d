"""CI-5: job `slow` sleeps 60 s; a commit m2 while it runs on m1 kills the
m1 run's process group, writes `failure` "cancelled: superseded by <m2>"
for m1, and runs m2."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, in_group, sleeper
from tests.gitrepo import git


def superseded_by(description: str | None, sha: str) -> bool:
    """"cancelled: superseded by <sha>" (the SHA in full or abbreviated)."""
    prefix = "cancelled: superseded by "
    if description is None or not description.startswith(prefix):
        return False
    named = description.removeprefix(prefix)
    return len(named) >= 7 and sha.startswith(named)


def test_ci_05_superseded_run_cancelled(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    mark = stack.marker()
    stack.configure([{"name": "slow", "run": sleeper(60, mark)}])
    stack.start()
    stack.wait_status(m1, "slow", "pending")
    (first,) = stack.wait_marker(mark)
    group = in_group(first.pgid)
    assert first in group and first.pgid != stack.ci.proc.pid  # type: ignore[union-attr]

    m2 = stack.commit("m2")
    stack.wait_gone(group, "the m1 run's process group ending")
    old = stack.wait_status(m1, "slow", "failure")
    assert superseded_by(old.description, m2), old
    stack.wait_status(m2, "slow", "pending")
    (second,) = stack.wait_marker(mark, exclude=group)
    assert second.pgid != first.pgid
    assert stack.status(m1, "slow") == old


def test_ci_05_deleted_branch_cancelled(ci_stack: CIStack) -> None:
    """The other half of B.3 step 5: a target that disappears (a deleted
    branch) has its running jobs cancelled too."""
    stack = ci_stack
    mark = stack.marker()
    d1 = stack.commit("d1", branch="dev")
    git(stack.repo, "checkout", "-q", "master")
    stack.configure([{"name": "slow", "run": sleeper(60, mark)}], targets=["heads/dev"])
    stack.start()
    (sleeping,) = stack.wait_marker(mark)
    group = in_group(sleeping.pgid)
    git(stack.repo, "branch", "-D", "dev")
    stack.wait_gone(group, "the deleted branch's running job ending")
    status = stack.wait_status(d1, "slow", "failure")
    assert (status.description or "").startswith("cancelled"), status
