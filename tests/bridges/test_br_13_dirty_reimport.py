"""BR-13: .dirty files ask for a re-import of a PR, a ref or a repository."""

from __future__ import annotations

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    client_commit,
    datakit_server,
    github_bridge,
    metadata,
    read,
    settle,
    wait_for,
)


def test_br_13_dirty_reimport(fake_github: FakeGitHub) -> None:
    fake = fake_github
    fake.push("u/r", "master")
    fake.open_pull("u/r", title="Fix", head="fix", number=3)
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)) as bridge:
            wait_for(branch, lambda t: read(t, "u/r/pr/3/title") == b"Fix\n")
            settle(bridge, branch)
            with fake.without_webhooks():
                fake.retitle_pull("u/r", 3, "Quietly renamed")
                c3 = fake.push("u/r", "master")
                c4 = fake.push("u/r", "heads/dev")
            marker = settle(bridge, branch)
            assert branch.head() == marker  # nothing seen without a webhook or a resync

            client_commit(branch, {"u/r/pr/3/.dirty": b""})
            wait_for(branch, lambda t: read(t, "u/r/pr/3/title") == b"Quietly renamed\n"
                     and not t.exists("u/r/pr/3/.dirty"))
            client_commit(branch, {"u/r/ref/heads/master/.dirty": b""})
            head = wait_for(branch, lambda t: not t.exists("u/r/ref/heads/master/.dirty"))
            assert read(head.tree(), "u/r/ref/heads/master/head") == f"{c3}\n".encode()
            assert read(head.tree(), "u/r/ref/heads/dev/head") is None

            client_commit(branch, {"u/r/.dirty": b""})
            head = wait_for(branch, lambda t: not t.exists("u/r/.dirty"))
            assert read(head.tree(), "u/r/ref/heads/dev/head") == f"{c4}\n".encode()
            settle(bridge, branch)
