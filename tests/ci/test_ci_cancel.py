"""POST /cancel/<branch> (spec B.6), end to end: without the token 403 and
the job runs on; with it, the job's process group is killed, the status says
so, and the cancellation is stored: a restarted CI does not run it again."""

from __future__ import annotations

from tests.ci.cihelpers import (
    CIStack,
    alive,
    expected_result_branch,
    in_group,
    read,
    wait_until,
    with_marker,
)


def test_ci_cancel_a_running_job(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    mark = stack.marker()
    stack.configure([{"name": "slow", "run": stack.counting("slow", f"exec -a {mark} sleep 60")}])
    stack.start()
    (sleeping,) = stack.wait_marker(mark)
    group = in_group(sleeping.pgid)
    branch = expected_result_branch(stack.config_path, "slow", m1)
    with stack.http() as http:
        refused = http.post(f"/cancel/{branch}")
        assert refused.status_code == 403, refused.status_code
        assert alive(group) == group
        answer = http.post(f"/cancel/{branch}", headers=stack.bearer())
        assert answer.status_code < 400, (answer.status_code, answer.text)
    stack.wait_gone(group, "the cancelled job's process group ending")
    status = stack.wait_status(m1, "slow", "failure")
    assert status.description == "cancelled by a user", status
    head = stack.conn.branch(branch).head()
    assert head is not None and read(head.tree(), "failure") is not None

    stack.stop()
    stack.start()
    with stack.http() as http:
        wait_until(lambda: "cancelled by a user" in http.get("/me/p/ref/heads/master").text,
                   "the restarted CI showing the stored cancellation", why=stack.why)
    assert stack.runs_of("slow") == 1
    assert with_marker(mark) == []
    assert stack.conn.branch(branch).head() == head
