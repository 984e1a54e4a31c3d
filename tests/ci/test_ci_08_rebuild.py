"""CI-8: POST rebuild of `bad`'s result branch with the token commits
`rebuild-requested` and runs the job again (a new result commit); without
the token: 403 and nothing changes. Rebuilding the failed jobs of a target
(#494) runs every failed job again and no other."""

from __future__ import annotations

import html
import re

from datakit.client import Commit
from tests.ci.cihelpers import (
    CIStack,
    all_commits,
    first_parent,
    read,
    result_branches,
    wait_until,
)

BAD = "echo boom; exit 3"


def rebuilt(stack: CIStack, branch: str, since: Commit) -> Commit:
    """Until the result branch has a finished result newer than ``since``."""
    def done() -> Commit | None:
        head = stack.conn.branch(branch).head()
        if head is None or head == since or read(head.tree(), "rebuild-requested") is not None:
            return None
        return head if read(head.tree(), "log") is not None else None

    result: Commit = wait_until(done, f"a new result on {branch}", why=stack.why)
    return result


def test_ci_08_rebuild(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "bad", "run": stack.counting("bad", BAD)}])
    stack.start()
    stack.wait_status(m1, "bad", "failure")
    (branch,) = result_branches(stack.conn, "bad", m1)
    before = stack.conn.branch(branch).head()
    assert before is not None and read(before.tree(), "failure") is not None

    with stack.http() as http:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}):
            refused = http.post(f"/rebuild/{branch}", headers=headers)
            assert refused.status_code == 403, (headers, refused.status_code, refused.text)
        assert stack.conn.branch(branch).head() == before

        answer = http.post(f"/rebuild/{branch}", headers=stack.bearer())
        assert answer.status_code < 400, (answer.status_code, answer.text)
    after = rebuilt(stack, branch, before)
    stack.wait_status(m1, "bad", "failure")
    assert stack.runs_of("bad") == 2
    assert read(after.tree(), "failure") is not None
    assert b"boom" in (read(after.tree(), "log") or b"")
    # exactly one mark: the refused requests did nothing
    marks = [c for c in first_parent(stack.conn.branch(branch)) if c not in all_commits(before)]
    assert [c.message for c in marks if read(c.tree(), "rebuild-requested") is not None] == [
        "Marked for rebuild\n"
    ], [c.message for c in marks]


def test_ci_08_rebuild_failed_jobs_of_a_target(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([
        {"name": "ok", "run": stack.counting("ok")},
        {"name": "bad", "run": stack.counting("bad", BAD)},
        {"name": "bad2", "run": stack.counting("bad2", BAD)},
    ])
    stack.start()
    stack.wait_finished(m1, "ok", "bad", "bad2")
    heads = {job: stack.conn.branch(result_branches(stack.conn, job, m1)[0]).head()
             for job in ("ok", "bad", "bad2")}
    with stack.http() as http:
        target = {"failed": "me/p/heads/master"}  # spec B.3 step 7, --canary's spelling
        refused = http.post("/rebuild", params=target)
        assert refused.status_code == 403, refused.status_code
        for job, head in heads.items():
            assert stack.conn.branch(result_branches(stack.conn, job, m1)[0]).head() == head
        answer = http.post("/rebuild", params=target, headers=stack.bearer())
        assert answer.status_code < 400, (answer.status_code, answer.text)
    for job in ("bad", "bad2"):
        since = heads[job]
        assert since is not None
        rebuilt(stack, result_branches(stack.conn, job, m1)[0], since)
    stack.wait_finished(m1, "bad", "bad2")
    assert (stack.runs_of("ok"), stack.runs_of("bad"), stack.runs_of("bad2")) == (1, 2, 2)
    assert stack.conn.branch(result_branches(stack.conn, "ok", m1)[0]).head() == heads["ok"]
    assert stack.status(m1, "ok").state == "success"  # type: ignore[union-attr]


FORM = re.compile(
    r'<form method="post" action="([^"]*)"[^>]*>\s*'
    r'<input type="hidden" name="csrf" value="([^"]*)">'
)


def test_ci_08_rebuild_button_after_login(ci_stack: CIStack) -> None:
    """The same rebuild as a person does it: log in with the token, press
    the target page's Rebuild button (a form with its CSRF token)."""
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "bad", "run": stack.counting("bad", BAD)}])
    stack.start()
    stack.wait_status(m1, "bad", "failure")
    (branch,) = result_branches(stack.conn, "bad", m1)
    before = stack.conn.branch(branch).head()
    assert before is not None
    with stack.http() as http:
        login = http.get("/login")
        (csrf,) = re.findall(r'name="csrf" value="([^"]*)"', login.text)
        logged = http.post("/login", data={"csrf": html.unescape(csrf), "next": "/",
                                           "password": stack.token})
        assert logged.status_code in (302, 303), (logged.status_code, logged.text)
        page = http.get("/me/p/ref/heads/master", params={"test": "bad"})
        forms = {html.unescape(action): html.unescape(token)
                 for action, token in FORM.findall(page.text)}
        rebuild = [a for a in forms if a.startswith("/rebuild/") and branch in a]
        assert len(rebuild) == 1, forms
        forged = http.post(rebuild[0], data={"csrf": "forged", "redirect": "/"})
        assert forged.status_code == 403, forged.status_code
        assert stack.conn.branch(branch).head() == before
        pressed = http.post(rebuild[0], data={"csrf": forms[rebuild[0]], "redirect": "/"})
        assert pressed.status_code in (302, 303), (pressed.status_code, pressed.text)
    rebuilt(stack, branch, before)
    assert stack.runs_of("bad") == 2
