"""BR-7: a status update is sent; a description over 140 characters is cut."""

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


def test_br_07_status_update_and_description_limit(fake_github: FakeGitHub) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    base = f"u/r/commit/{c1}/status/ci/datakit/test"
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)) as bridge:
            wait_file(branch, "u/r/ref/heads/master/head", f"{c1}\n".encode())
            client_commit(branch, {f"{base}/state": b"pending\n"})
            fake.wait_until(lambda: len(fake.requests("POST", "/repos/u/r/statuses/*")) == 1)
            settle(bridge, branch)
            client_commit(branch, {f"{base}/state": b"success\n",
                                   f"{base}/description": b"x" * 300 + b"\n"})
            fake.wait_until(lambda: len(fake.requests("POST", "/repos/u/r/statuses/*")) == 2)
            settle(bridge, branch)
            posts = fake.requests("POST", "/repos/u/r/statuses/*")
            assert len(posts) == 2
            sent = posts[1].body
            assert sent["state"] == "success" and posts[1].status == 201
            assert len(sent["description"]) == 140
            assert sent["description"] == "x" * 139 + "…"
            # the branch holds what GitHub holds now
            wait_file(branch, f"{base}/description", ("x" * 139 + "…\n").encode())
            settle(bridge, branch)
            assert len(fake.requests("POST", "/repos/u/r/statuses/*")) == 2
