"""CI-4: a new commit m2 on master gets statuses; m1's stay as they were."""

from __future__ import annotations

from tests.ci.cihelpers import WEB_UI, CIStack


def test_ci_04_branch_moves(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "ok", "run": ["true"]}])
    stack.start()
    before = stack.wait_status(m1, "ok", "success")
    m2 = stack.commit("m2")
    after = stack.wait_status(m2, "ok", "success")
    assert after.target_url == f"{WEB_UI}me/p/commit/{m2}?test=ok"
    assert stack.status(m1, "ok") == before
