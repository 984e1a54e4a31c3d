"""CI-13: with the GitHub bridge and the fake GitHub, PR #5 (head p1) gets
its statuses on GitHub as POSTs with context `ci/datakit/ok`; closing the
PR cancels its running jobs."""

from __future__ import annotations

from pathlib import Path

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import bridge_args, github_bridge
from tests.ci.cihelpers import WEB_UI, ci_stack_on, in_group, read, sleeper
from tests.gitrepo import git
from tests.operations.procs import datakit_process


def test_ci_13_pr_targets_via_github_bridge(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake = fake_github
    with datakit_process() as (port, _metrics, _proc):
        with ci_stack_on(tmp_path, port, bridge=False) as stack:
            m1 = stack.m1
            p1 = stack.commit("p1", branch="feature")
            git(stack.repo, "update-ref", "refs/pull/5/head", p1)  # as on GitHub
            fake.push("u/r", "master", sha=m1)
            fake.open_pull("u/r", title="Fix", head="feature", head_sha=p1, number=5)
            args = bridge_args(stack.address, fake.base_url, "--poll-interval", "1")
            with github_bridge(*args):
                stack.wait_meta(lambda t: read(t, "u/r/pr/5/head") == f"{p1}\n".encode(),
                                "PR 5 on github-metadata")
                mark = stack.marker()
                stack.configure(
                    [{"name": "ok", "run": ["true"]}, {"name": "slow", "run": sleeper(60, mark)}],
                    repo="u/r", targets=["prs"],
                )
                stack.start()

                def posted(state: str) -> list[dict[str, str]]:
                    return [r.body for r in fake.requests("POST", f"/repos/u/r/statuses/{p1}")
                            if r.body.get("context") == "ci/datakit/ok"
                            and r.body.get("state") == state]

                fake.wait_until(lambda: bool(posted("success")), timeout=60)
                (success,) = posted("success")
                assert success["target_url"] == f"{WEB_UI}u/r/commit/{p1}?test=ok", success
                assert success.get("description"), success
                _state, latest = fake.combined_status("u/r", p1)
                assert latest["ci/datakit/ok"].state == "success"
                assert not fake.requests("POST", f"/repos/u/r/statuses/{m1}")  # only PRs

                (sleeping,) = stack.wait_marker(mark)
                group = in_group(sleeping.pgid)
                fake.close_pull("u/r", 5)
                stack.wait_gone(group, "the closed PR's running job ending")
                stack.stop()


def test_ci_13_prs_and_branches_together(fake_github: FakeGitHub, tmp_path: Path) -> None:
    """The default targets (every branch and every PR): master's head and
    PR #5's head both get their statuses on GitHub."""
    fake = fake_github
    with datakit_process() as (port, _metrics, _proc):
        with ci_stack_on(tmp_path, port, bridge=False) as stack:
            m1 = stack.m1
            p1 = stack.commit("p1", branch="feature")
            git(stack.repo, "update-ref", "refs/pull/5/head", p1)
            fake.push("u/r", "master", sha=m1)
            fake.open_pull("u/r", title="Fix", head="feature", head_sha=p1, number=5)
            args = bridge_args(stack.address, fake.base_url, "--poll-interval", "1")
            with github_bridge(*args):
                stack.wait_meta(lambda t: read(t, "u/r/pr/5/head") == f"{p1}\n".encode(),
                                "PR 5 on github-metadata")
                stack.configure([{"name": "ok", "run": ["true"]}], repo="u/r")
                stack.start()
                for sha in (m1, p1):
                    stack.wait_status(sha, "ok", "success", repo="u/r")

                def posted(sha: str) -> bool:
                    return any(r.body.get("context") == "ci/datakit/ok"
                               and r.body.get("state") == "success"
                               for r in fake.requests("POST", f"/repos/u/r/statuses/{sha}"))

                fake.wait_until(lambda: posted(m1) and posted(p1), timeout=60)
                with stack.http() as http:
                    for path in ("/", "/pr", "/branch", "/u/r/pr/5"):
                        page = http.get(path)
                        assert page.status_code == 200, (path, page.status_code)
                    assert "Fix" in http.get("/pr").text
                stack.stop()
