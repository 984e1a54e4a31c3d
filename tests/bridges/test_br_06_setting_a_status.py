"""BR-6: a status a client commits is POSTed to GitHub, once."""

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


def test_br_06_setting_a_status(fake_github: FakeGitHub) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)) as bridge:
            wait_file(branch, "u/r/ref/heads/master/head", f"{c1}\n".encode())
            settle(bridge, branch)
            base = f"u/r/commit/{c1}/status/ci/datakit/test"
            client_commit(
                branch,
                {f"{base}/state": b"pending", f"{base}/description": b"Running",
                 f"{base}/target_url": b"http://ci/x"},
            )
            fake.wait_until(lambda: bool(fake.requests("POST", "/repos/u/r/statuses/*")))
            marker = settle(bridge, branch)
            assert branch.head() == marker  # the branch already agreed: no commit
            posts = fake.requests("POST", "/repos/u/r/statuses/*")
            assert [(p.path, p.body, p.status) for p in posts] == [
                (f"/repos/u/r/statuses/{c1}",
                 {"state": "pending", "context": "ci/datakit/test", "description": "Running",
                  "target_url": "http://ci/x"},
                 201)
            ]
            _state, latest = fake.combined_status("u/r", c1)
            assert latest["ci/datakit/test"].state == "pending"
