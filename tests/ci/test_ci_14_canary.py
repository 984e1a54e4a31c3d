"""CI-14: with `--canary me/p/heads/master`, branch `dev` gets no status."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, statuses


def test_ci_14_canary(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    d1 = stack.commit("d1", branch="dev")
    stack.wait_ref("heads/dev", d1)
    stack.configure([{"name": "ok", "run": stack.counting("ok")}])
    stack.start("--canary", "me/p/heads/master")
    stack.wait_status(m1, "ok", "success")
    # a later master commit: by then the CI has certainly seen dev
    m2 = stack.commit("m2", branch="master")
    stack.wait_status(m2, "ok", "success")
    head = stack.meta.head()
    assert head is not None
    assert set(statuses(head.tree())) == {(m1, "ok"), (m2, "ok")}
    assert stack.runs_of("ok") == 2
    assert "status-me-p-ref-heads-dev" not in stack.conn.branches()
