"""BR-2: open PRs are imported with their comments."""

from __future__ import annotations

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    datakit_server,
    files,
    github_bridge,
    metadata,
    read,
    wait_for,
)

AAA = "a" * 40


def test_br_02_open_prs_imported(fake_github: FakeGitHub) -> None:
    fake = fake_github
    fake.push("u/r", "master")
    fake.open_pull("u/r", title="Fix", head="fix", head_sha=AAA, base="master",
                   user="alice", body="why", number=3)
    assert fake.add_comment("u/r", 3, "ok", user="bob", comment_id=7) == 7
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)):
            head = wait_for(branch, lambda t: read(t, "u/r/pr/3/comments/1/body") is not None)
        got = {k: v for k, v in files(head.tree()).items() if k.startswith("pr/")}
        assert got == {
            "pr/3/head": AAA.encode() + b"\n",
            "pr/3/state": b"open\n",
            "pr/3/title": b"Fix\n",
            "pr/3/owner": b"alice\n",
            "pr/3/base": b"master\n",
            "pr/3/comments/0/id": b"0\n",
            "pr/3/comments/0/user": b"alice\n",
            "pr/3/comments/0/body": b"why",
            "pr/3/comments/1/id": b"7\n",
            "pr/3/comments/1/user": b"bob\n",
            "pr/3/comments/1/body": b"ok",
        }
