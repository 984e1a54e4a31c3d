"""CI-10: `timeout = 2` around `sleep 30`: `failure` "timed out after 2 s",
and the sleep is gone."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, sleeper, with_marker


def test_ci_10_timeout(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    mark = stack.marker()
    stack.configure([{"name": "hang", "run": sleeper(30, mark), "timeout": 2}])
    stack.start()
    running = stack.wait_marker(mark)
    status = stack.wait_status(m1, "hang", "failure")
    assert status.description == "timed out after 2 s", status
    stack.wait_gone(running, "the timed-out sleep ending")
    assert with_marker(mark) == []
