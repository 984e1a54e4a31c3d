"""CI-2: job `ok` runs `true`: its status on m1 is `pending`, then
`success` with a description and the target URL of spec A.3."""

from __future__ import annotations

from tests.ci.cihelpers import WEB_UI, CIStack, all_commits, read_status


def test_ci_02_pending_then_success(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "ok", "run": ["true"]}])
    stack.start()
    pending = stack.wait_status(m1, "ok", lambda s: s.state in ("pending", "success"))
    final = stack.wait_status(m1, "ok", "success")
    assert final.description, final
    assert final.target_url == f"{WEB_UI}me/p/commit/{m1}?test=ok"
    # `pending` came first: a commit before the success holds it.
    head = stack.meta.head()
    seen = [read_status(c.tree(), m1, "ok") for c in all_commits(head)]
    states = {s.state for s in seen if s is not None}
    assert "pending" in states, (pending, seen)
    assert states <= {"pending", "success"}, states
    for s in seen:
        if s is not None:
            assert s.target_url == f"{WEB_UI}me/p/commit/{m1}?test=ok", s
