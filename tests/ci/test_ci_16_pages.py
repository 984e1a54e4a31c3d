"""CI-16 (HTTP part): `/`, `/branch`, `/pr`, the target page and the commit
page answer 200 with the job names and states; unknown targets give 404.
(The Chromium screenshot is tests/ci/test_web_chromium.py.)"""

from __future__ import annotations

import re

from tests.ci.cihelpers import CIStack
from tests.gitrepo import git


def test_ci_16_pages(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([
        {"name": "okjob", "run": ["true"]},
        {"name": "badjob", "run": ["sh", "-c", "exit 3"]},
    ])
    stack.start()
    stack.wait_status(m1, "okjob", "success")
    stack.wait_status(m1, "badjob", "failure")
    with stack.http() as http:
        def page(path: str) -> str:
            answer = http.get(path, follow_redirects=True)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:2000])
            assert "text/html" in answer.headers.get("content-type", ""), answer.headers
            return str(answer.text)

        home = page("/")
        assert "master" in home and "failure" in home.lower(), home
        assert page("/pr")
        for path in ("/branch", "/me/p/ref/heads/master", f"/me/p/commit/{m1}"):
            body = page(path)
            for word in ("okjob", "badjob", "success", "failure"):
                assert word in body.lower(), (path, word, body)
        target = page("/me/p/ref/heads/master")
        assert "badjob failed: exit 3" in target, target
        assert m1[:7] in target

        commit = http.get(f"/me/p/commit/{m1}")
        assert commit.status_code in (301, 302, 303, 307, 308), commit.status_code
        assert "/me/p/ref/heads/master" in commit.headers["location"], commit.headers

        for path in ("/me/p/ref/heads/nope", "/me/p/pr/99", "/nobody/x/ref/heads/master"):
            answer = http.get(path, follow_redirects=True)
            assert answer.status_code == 404, (path, answer.status_code)


def test_ci_16_dashboard_tiles(ci_stack: CIStack) -> None:
    """The issue's done-when: two branches and a failing job give one green
    and one red tile on `/`."""
    stack, m1 = ci_stack, ci_stack.m1
    git(stack.repo, "checkout", "-q", "-b", "dev")
    (stack.repo / "FAIL").write_text("this branch fails\n")
    git(stack.repo, "add", "FAIL")
    git(stack.repo, "commit", "-q", "-m", "d1")
    d1 = git(stack.repo, "rev-parse", "HEAD")
    stack.wait_ref("heads/dev", d1)
    stack.configure([{"name": "check", "run": "test ! -e FAIL"}], dashboards=["master", "dev"])
    stack.start()
    stack.wait_status(m1, "check", "success")
    stack.wait_status(d1, "check", "failure")
    with stack.http() as http:
        home = http.get("/")
        assert home.status_code == 200
    tiles = {
        name: (classes.split(), state)
        for classes, name, state in re.findall(
            r'<a class="tile ([^"]*)"[^>]*>\s*<span class="tile-name">([^<]*)</span>\s*'
            r'<span class="tile-state">([^<]*)</span>',
            home.text,
        )
    }
    assert set(tiles) == {"master", "dev"}, home.text
    assert tiles["master"][1] == "success" and tiles["dev"][1] == "failure", tiles
    assert tiles["master"][0] != tiles["dev"][0], tiles
