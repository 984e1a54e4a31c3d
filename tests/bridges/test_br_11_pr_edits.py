"""BR-11: title, state and base edited in the branch are PATCHed to the PR."""

from __future__ import annotations

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    client_commit,
    datakit_server,
    github_bridge,
    metadata,
    read,
    settle,
    wait_for,
)


def test_br_11_pr_edits_go_to_github(fake_github: FakeGitHub) -> None:
    fake = fake_github
    fake.push("u/r", "master")
    fake.open_pull("u/r", title="Fix", head="fix", body="why", number=3)
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)) as bridge:
            wait_for(branch, lambda t: read(t, "u/r/pr/3/title") == b"Fix\n")
            settle(bridge, branch)
            client_commit(branch, {"u/r/pr/3/title": b"New\n"})
            fake.wait_until(lambda: bool(fake.requests("PATCH", "/repos/u/r/pulls/3")))
            settle(bridge, branch)
            patches = fake.requests("PATCH", "/repos/u/r/pulls/*")
            assert [(p.path, p.body) for p in patches] == [
                ("/repos/u/r/pulls/3", {"title": "New", "state": "open", "base": "master"})
            ]
            assert fake.pull("u/r", 3).title == "New"
            assert fake.pull("u/r", 3).body == "why"  # the body is never sent
            client_commit(branch, {"u/r/pr/3/state": b"closed\n"})
            wait_for(branch, lambda t: read(t, "u/r/pr/3/head") is None)
            assert fake.pull("u/r", 3).state == "closed"
            assert len(fake.requests("PATCH", "/repos/u/r/pulls/*")) == 2
