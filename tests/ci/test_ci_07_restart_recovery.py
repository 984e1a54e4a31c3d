"""CI-7: a CI killed with SIGKILL while `slow` runs: restarted, it runs the
job again and writes `success`; no status stays pending. The job the dead
CI left running (its own process group, nobody to stop it) does not
outlive the restart: the issue allows no stray process."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, read, result_branches, statuses


def test_ci_07_restart_recovery(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    mark = stack.marker()
    # The first run sleeps long; the one after the restart passes at once.
    then = f'[ "$(wc -l < {stack.counter("slow")})" -ge 2 ] || exec -a {mark} sleep 300'
    stack.configure([{"name": "slow", "run": stack.counting("slow", then)}])
    stack.start()
    orphans = stack.wait_marker(mark, named=True)
    assert stack.wait_status(m1, "slow", "pending")
    stack.kill()
    assert stack.status(m1, "slow").state == "pending"  # type: ignore[union-attr]

    stack.start()
    stack.wait_status(m1, "slow", "success")
    assert stack.runs_of("slow") == 2
    stack.wait_gone(orphans, "the killed CI's job ending after the restart", timeout=30)
    head = stack.meta.head()
    assert head is not None
    pending = {k: s for k, s in statuses(head.tree()).items() if s.state == "pending"}
    assert not pending, pending
    (branch,) = result_branches(stack.conn, "slow", m1)
    result = stack.conn.branch(branch).head()
    assert result is not None
    assert read(result.tree(), "log") is not None
    assert read(result.tree(), "failure") is None
