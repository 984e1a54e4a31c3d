"""CI-7: a CI killed with SIGKILL while `slow` runs: restarted, it runs the
job again and writes `success`; no status stays pending."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, read, result_branches, statuses


def test_ci_07_restart_recovery(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    mark = stack.marker()
    stack.configure([{"name": "slow", "run": stack.counting("slow", f"exec -a {mark} sleep 3")}])
    stack.start()
    stack.wait_marker(mark)
    assert stack.wait_status(m1, "slow", "pending")
    stack.kill()
    assert stack.status(m1, "slow").state == "pending"  # type: ignore[union-attr]

    stack.start()
    stack.wait_status(m1, "slow", "success")
    assert stack.runs_of("slow") == 2
    head = stack.meta.head()
    assert head is not None
    pending = {k: s for k, s in statuses(head.tree()).items() if s.state == "pending"}
    assert not pending, pending
    (branch,) = result_branches(stack.conn, "slow", m1)
    result = stack.conn.branch(branch).head()
    assert result is not None
    assert read(result.tree(), "log") is not None
    assert read(result.tree(), "failure") is None
