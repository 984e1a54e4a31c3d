"""CI-9: `test` needs `build`. `build` fails: `test` is `failure` "blocked by
build" and never runs; fixed and rebuilt, `build` passes and `test` runs."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, in_group, result_branches


def test_ci_09_dependencies(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    fixed = stack.tmp / "fixed"
    stack.configure([
        {"name": "build", "run": stack.counting("build", f"test -e {fixed}")},
        {"name": "test", "run": stack.counting("test"), "needs": ["build"]},
    ])
    stack.start()
    build = stack.wait_status(m1, "build", "failure")
    assert build.description == "build failed: exit 1", build
    test = stack.wait_status(m1, "test", "failure")
    assert test.description == "blocked by build", test
    assert stack.runs_of("test") == 0

    fixed.touch()
    (branch,) = result_branches(stack.conn, "build", m1)
    with stack.http() as http:
        answer = http.post(f"/rebuild/{branch}", headers=stack.bearer())
        assert answer.status_code < 400, (answer.status_code, answer.text)
    stack.wait_status(m1, "build", "success")
    stack.wait_status(m1, "test", "success")
    assert (stack.runs_of("build"), stack.runs_of("test")) == (2, 1)


def test_ci_09_rebuild_cancels_running_dependants(ci_stack: CIStack) -> None:
    """B.3 step 5: rebuilding a job cancels its running dependants and runs
    them again after it. The dependant leaves a big tree in its checkout, as
    builds do, so the rebuilt job can finish while the cancelled run is
    still being cleaned up."""
    stack, m1 = ci_stack, ci_stack.m1
    mark = stack.marker()
    stack.configure([
        {"name": "build", "run": stack.counting("build")},
        {"name": "test", "run": stack.counting(
            "test", f"mkdir out && (cd out && seq 1 40000 | xargs touch); exec -a {mark} sleep 60"
         ),
         "needs": ["build"]},
    ])
    stack.start()
    stack.wait_status(m1, "build", "success")
    (first,) = stack.wait_marker(mark, named=True)
    group = in_group(first.pgid)
    (branch,) = result_branches(stack.conn, "build", m1)
    with stack.http() as http:
        answer = http.post(f"/rebuild/{branch}", headers=stack.bearer())
        assert answer.status_code < 400, (answer.status_code, answer.text)
    stack.wait_gone(group, "the dependant's first run ending")
    (second,) = stack.wait_marker(mark, exclude=group, named=True)
    assert second.pgid != first.pgid
    assert (stack.runs_of("build"), stack.runs_of("test")) == (2, 2)
    stack.wait_status(m1, "build", "success")
    stack.wait_status(m1, "test", "pending")
