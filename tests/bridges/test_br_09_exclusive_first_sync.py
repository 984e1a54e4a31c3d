"""BR-9: with x, the branch wins on the first sync; without, GitHub does."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("caps", ["*:r,status[ci/datakit]:x", "*:rw"])
def test_br_09_exclusive_on_first_sync(fake_github: FakeGitHub, caps: str) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    fake.add_status("u/r", c1, "failure", "ci/datakit/a")
    state = f"u/r/commit/{c1}/status/ci/datakit/a/state"
    with datakit_server() as address, metadata(address) as (_conn, branch):
        # what a previous run left in the branch
        client_commit(branch, {"README.md": b"### DataKit -- GitHub bridge\n",
                               "u/r/.monitor": b"", "u/r/ref/heads/master/head": f"{c1}\n".encode(),
                               state: b"success\n"})
        with github_bridge(*bridge_args(address, fake.base_url, "-c", caps)) as bridge:
            if "x" in caps:
                fake.wait_until(lambda: bool(fake.requests("POST", "/repos/u/r/statuses/*")))
                settle(bridge, branch)
                (post,) = fake.requests("POST", "/repos/u/r/statuses/*")
                assert post.body == {"state": "success", "context": "ci/datakit/a"}
                assert fake.combined_status("u/r", c1)[1]["ci/datakit/a"].state == "success"
                wait_file(branch, state, b"success\n")
            else:
                wait_file(branch, state, b"failure\n")
                settle(bridge, branch)
                assert fake.requests("POST", "/repos/u/r/statuses/*") == []
