"""BR-18: failed calls are tried again; a rate limit is waited out."""

from __future__ import annotations

import time

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    client_commit,
    datakit_server,
    github_bridge,
    metadata,
    read,
    settle,
    wait_file,
)


def test_br_18_errors_and_rate_limits(fake_github: FakeGitHub) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    base = f"u/r/commit/{c1}/status/ci/datakit"
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)) as bridge:
            wait_file(branch, "u/r/ref/heads/master/head", f"{c1}\n".encode())
            settle(bridge, branch)
            fake.fail("/repos/u/r/statuses/*", count=1, status=502, method="POST")
            client_commit(branch, {f"{base}/a/state": b"success\n"})
            fake.wait_until(lambda: [p.status for p in fake.requests("POST")] == [502, 201],
                            timeout=20)
            assert read(branch.head().tree(), f"{base}/a/state") == b"success\n"  # type: ignore[union-attr]
            assert fake.combined_status("u/r", c1)[1]["ci/datakit/a"].state == "success"
            bridge.wait_log("502")

            fake.clear_requests()
            fake.rate_limit(seconds=2)
            client_commit(branch, {f"{base}/b/state": b"pending\n"})
            fake.wait_until(
                lambda: "ci/datakit/b" in fake.combined_status("u/r", c1)[1], timeout=20
            )
            reset = fake.rate_limit_reset()
            assert reset is not None and time.time() >= reset
            assert fake.requests_before_reset() == []
            statuses = [r.status for r in fake.requests("POST")]
            assert statuses[0] == 403 and statuses[-1] == 201
