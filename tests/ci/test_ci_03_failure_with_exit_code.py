"""CI-3: a job exiting 3 is `failure` "bad failed: exit 3"; its result
branch holds the log (`boom`) and a `failure` file."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, expected_result_branch, read, result_branches


def test_ci_03_failure_with_exit_code(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "bad", "run": ["sh", "-c", "echo boom; exit 3"]}])
    stack.start()
    status = stack.wait_status(m1, "bad", "failure")
    assert status.description == "bad failed: exit 3", status
    branches = result_branches(stack.conn, "bad", m1)
    assert branches == [expected_result_branch(stack.config_path, "bad", m1)], branches
    head = stack.conn.branch(branches[0]).head()
    assert head is not None
    tree = head.tree()
    log = read(tree, "log")
    assert log is not None and b"boom" in log, log
    failure = read(tree, "failure")
    assert failure is not None and b"exit 3" in failure, failure
    assert read(tree, "value/exit-status") is not None
    assert read(tree, "value/exit-status").strip() == b"3"  # type: ignore[union-attr]
    assert read(tree, "rebuild-requested") is None
