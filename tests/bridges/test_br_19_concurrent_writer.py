"""BR-19: a client committing while the bridge writes loses nothing."""

from __future__ import annotations

import threading
from pathlib import Path

from datakit.client import connect
from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    BRANCH,
    bridge_args,
    client_commit,
    datakit_server,
    files,
    github_bridge,
    metadata,
    settle,
    wait_for,
)
from tests.ports import free_port

BRANCHES = 15
NOTES = 40


def test_br_19_concurrent_writer(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake = fake_github
    fake.push("u/r", "master")
    hook = f"http://127.0.0.1:{free_port()}/hook"
    with datakit_server("--git", str(tmp_path / "db.git")) as address, \
            metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url, "--webhook", hook)) as bridge:
            wait_for(branch, lambda t: t.exists_file("u/r/ref/heads/master/head"))
            settle(bridge, branch)

            def writer() -> None:
                with connect(address, timeout=30) as conn:
                    b = conn.branch(BRANCH)
                    for i in range(NOTES):
                        client_commit(b, {f"notes/n{i}": f"{i}\n".encode()}, f"note {i}")

            thread = threading.Thread(target=writer)
            thread.start()
            shas = {f"b{i}": fake.push("u/r", f"heads/b{i}") for i in range(BRANCHES)}
            thread.join(60)
            assert not thread.is_alive()
            head = wait_for(
                branch,
                lambda t: all(t.exists_file(f"u/r/ref/heads/{n}/head") for n in shas),
                timeout=30,
            )
            settle(bridge, branch)
        head = branch.head()
        assert head is not None
        got = files(head.tree(), "")
        assert all(got[f"notes/n{i}"] == f"{i}\n".encode() for i in range(NOTES))
        assert all(got[f"u/r/ref/heads/{n}/head"] == f"{s}\n".encode() for n, s in shas.items())
        assert "gave up" not in bridge.log and "kept changing" not in bridge.log
