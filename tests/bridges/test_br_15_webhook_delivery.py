"""BR-15: the bridge registers a hook and follows GitHub's deliveries."""

from __future__ import annotations

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    datakit_server,
    github_bridge,
    metadata,
    read,
    wait_file,
    wait_for,
)
from tests.ports import free_port


def test_br_15_webhook_delivery(fake_github: FakeGitHub) -> None:
    fake = fake_github
    fake.push("u/r", "master")
    fake.push("u/r", "heads/feature/x")
    url = f"http://127.0.0.1:{free_port()}/hook"
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url, "--webhook", url)) as bridge:
            wait_for(branch, lambda t: t.exists_file("u/r/ref/heads/feature/x/head"))
            (hook,) = fake.hooks("u/r")
            assert hook.active and hook.name == "web"
            assert sorted(hook.events) == ["create", "delete", "pull_request", "push", "status"]
            assert hook.config["url"] == url and hook.config["content_type"] == "json"
            assert hook.config.get("secret")
            c3 = fake.push("u/r", "master")
            wait_file(branch, "u/r/ref/heads/master/head", f"{c3}\n".encode())
            fake.delete_ref("u/r", "heads/feature/x")
            wait_for(branch, lambda t: not t.exists("u/r/ref/heads/feature"))
            fake.open_pull("u/r", title="Hooked", head="hooked", number=5, body="b")
            wait_for(branch, lambda t: read(t, "u/r/pr/5/title") == b"Hooked\n")
            head = branch.head()
            assert head is not None
            assert read(head.tree(), "u/r/pr/5/comments/0/body") == b"b"
            fake.close_pull("u/r", 5)
            wait_for(branch, lambda t: not t.exists("u/r/pr/5"))
            assert all(d.status == 204 for d in fake.wait_deliveries())
            # all of it came by webhook: the repository was imported once
            assert bridge.log.count("imported u/r") == 1
