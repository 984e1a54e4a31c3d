"""BR-12: refs are read-only: a client's write is undone, nothing is pushed."""

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

C9 = "9" * 40


def test_br_12_refs_are_read_only(fake_github: FakeGitHub) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    path = "u/r/ref/heads/master/head"
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)) as bridge:
            wait_file(branch, path, f"{c1}\n".encode())
            settle(bridge, branch)
            fake.clear_requests()
            client_commit(branch, {path: f"{C9}\n".encode()})
            restored = wait_file(branch, path, f"{c1}\n".encode())
            bridge.wait_log(r"WARNING .*read-only")
            assert restored.message.startswith("1 item updated")
            settle(bridge, branch)
            writes = [r for r in fake.requests() if r.method != "GET"]
            assert writes == []
            assert fake.ref("u/r", "master") == c1
