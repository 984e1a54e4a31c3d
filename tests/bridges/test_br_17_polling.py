"""BR-17: --poll-interval follows GitHub without webhooks, with 304s."""

from __future__ import annotations

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    datakit_server,
    github_bridge,
    metadata,
    wait_file,
)


def test_br_17_polling(fake_github: FakeGitHub) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    fake.open_pull("u/r", title="Fix", head="fix", number=3)
    with datakit_server() as address, metadata(address) as (_conn, branch):
        args = bridge_args(address, fake.base_url, "--poll-interval", "1")
        with github_bridge(*args) as bridge:
            wait_file(branch, "u/r/ref/heads/master/head", f"{c1}\n".encode())
            c2 = fake.push("u/r", "master")
            wait_file(branch, "u/r/ref/heads/master/head", f"{c2}\n".encode())
            steps = bridge.steps()
            bridge.wait_steps(steps + 1)  # a poll that has seen the change
            fake.clear_requests()
            bridge.wait_steps(steps + 3)
            requests = fake.requests()
            assert requests, "no poll reached GitHub"
            assert all(r.method == "GET" and r.status == 304 for r in requests), [
                (r.method, r.path, r.status) for r in requests
            ]
            assert all("If-None-Match" in r.headers or "if-none-match" in r.headers
                       for r in requests)
