"""CI-6: after CI-2, a restarted CI runs nothing again (the result branch is
reused) and commits nothing about it."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, all_commits, result_branches, wait_until


def test_ci_06_cache_across_restarts(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "ok", "run": stack.counting("ok")}])
    stack.start()
    done = stack.wait_status(m1, "ok", "success")
    (branch,) = result_branches(stack.conn, "ok", m1)
    result = stack.conn.branch(branch).head()
    history = stack.wait_history("status-me-p-ref-heads-master", m1, {"ok": "success"})
    assert stack.runs_of("ok") == 1
    stack.stop()
    before = stack.meta.head()
    assert before is not None

    stack.start()
    with stack.http() as http:  # the restarted CI has looked m1's result up
        wait_until(lambda: "ok passed" in http.get("/me/p/ref/heads/master").text,
                   "the target page showing the cached result", why=stack.why)
    assert stack.meta.head() == before
    assert stack.conn.branch("status-me-p-ref-heads-master").head() == history
    # A later commit is handled after the restarted CI evaluated m1 again.
    m2 = stack.commit("m2")
    stack.wait_status(m2, "ok", "success")
    assert stack.runs_of("ok") == 2  # m2 only
    assert stack.conn.branch(branch).head() == result
    assert stack.status(m1, "ok") == done
    m1_dir = f"me/p/commit/{m1}/"
    known = {c.id for c in all_commits(before)}
    for c in all_commits(stack.meta.head()):
        if c.id in known:
            continue
        for parent in c.parents:
            touched = [d.path for d in c.diff(parent) if d.path.startswith(m1_dir)]
            assert not touched, (c.message, touched)
    # the history of master: nothing new about m1 after the restart
    old = {c.id for c in all_commits(history)}
    new = [c for c in all_commits(stack.conn.branch("status-me-p-ref-heads-master").head())
           if c.id not in old]
    assert new, "no history commit for m2"
    assert {c.tree().read_file("source-commit").strip() for c in new} == {m2.encode()}
