"""BR-14: a resync or a webhook that changes nothing makes no commit."""

from __future__ import annotations

from pathlib import Path

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    datakit_server,
    github_bridge,
    history,
    metadata,
    settle,
    wait_file,
)
from tests.ports import free_port


def test_br_14_no_empty_commits(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    fake.add_status("u/r", c1, "success", "ci/other", description="fine")
    hook = f"http://127.0.0.1:{free_port()}/hook"
    with datakit_server() as address, metadata(address) as (_conn, branch):
        args = bridge_args(address, fake.base_url, "--webhook", hook,
                           "--webhook-secret-file", str(tmp_path / "secret"), resync=0.5)
        with github_bridge(*args) as bridge:
            wait_file(branch, f"u/r/commit/{c1}/status/ci/other/state", b"success\n")
            marker = settle(bridge, branch)
            resyncs = bridge.log.count("imported u/r")
            bridge.wait_log("imported u/r", count=resyncs + 3)
            # the same status again: GitHub sends a status event, nothing changes
            before = len(fake.deliveries("status"))
            fake.add_status("u/r", c1, "success", "ci/other", description="fine")
            fake.wait_until(lambda: len(fake.deliveries("status")) > before
                            and fake.deliveries("status")[-1].status == 204)
            bridge.wait_log("event: status")
            assert settle(bridge, branch).parents == [marker]
            messages = [c.message for c in history(branch)]
            assert all(m.strip() for m in messages)
            # every bridge commit changed something: compare each with its parent
            for commit in history(branch)[:-1]:
                assert commit.diff(commit.parents[0]), commit.message
