"""BR-8: only the statuses the capabilities allow are sent."""

from __future__ import annotations

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    client_commit,
    datakit_server,
    github_bridge,
    metadata,
    settle,
    wait_file,
)


def test_br_08_capability_filter(fake_github: FakeGitHub) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    fake.add_status("u/r", c1, "success", "other/c")
    base = f"u/r/commit/{c1}/status"
    with datakit_server() as address, metadata(address) as (_conn, branch):
        args = bridge_args(address, fake.base_url, "-c", "*:r,status[ci/datakit]:x")
        with github_bridge(*args) as bridge:
            wait_file(branch, f"{base}/other/c/state", b"success\n")
            settle(bridge, branch)
            client_commit(branch, {f"{base}/ci/datakit/a/state": b"success\n",
                                   f"{base}/other/b/state": b"failure\n",
                                   f"{base}/other/c/state": b"error\n"})
            wait_file(branch, f"{base}/other/b/state", None)
            wait_file(branch, f"{base}/other/c/state", b"success\n")
            settle(bridge, branch)
            posts = fake.requests("POST", "/repos/u/r/statuses/*")
            assert [p.body["context"] for p in posts] == ["ci/datakit/a"]
            head = branch.head()
            assert head is not None
            assert head.tree().read_file(f"{base}/ci/datakit/a/state") == b"success\n"
