"""BR-5: the existing statuses of PR and ref heads are imported."""

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


def test_br_05_existing_statuses_imported(fake_github: FakeGitHub) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    fake.add_status("u/r", c1, "success", "ci/circleci", target_url="http://circle/1",
                    description="Tests passed")
    fake.add_status("u/r", c1, "pending")  # null context
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)):
            head = wait_for(
                branch, lambda t: read(t, f"u/r/commit/{c1}/status/default/state") is not None
            )
        got = {k: v for k, v in files(head.tree()).items() if k.startswith("commit/")}
        base = f"commit/{c1}/status"
        assert got == {
            f"{base}/ci/circleci/state": b"success\n",
            f"{base}/ci/circleci/target_url": b"http://circle/1\n",
            f"{base}/ci/circleci/description": b"Tests passed\n",
            f"{base}/default/state": b"pending\n",
        }
