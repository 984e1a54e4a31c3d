"""BR-22: the local bridge follows commits, deleted and new branches."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.client import Connection
from tests.bridges import localbridge
from tests.bridges.localbridge import (
    bridge,
    commit,
    files,
    head_of,
    make_repo,
    sha,
    wait_for_tree,
)
from tests.gitrepo import git

MASTER = "me/p/ref/heads/master/head"
FEATURE = "me/p/ref/heads/feature/x/head"

server_port = localbridge.server_port  # fixtures: a real datakit serve (memory, --git)
client = localbridge.client


@pytest.mark.parametrize("watch", ["inotify", "polling"])
def test_br_22_local_bridge_follows_changes(
    tmp_path: Path, server_port: int, client: Connection, watch: str
) -> None:
    repo = make_repo(tmp_path / "p")
    extra = ["--no-inotify", "--poll-interval", "0.2"] if watch == "polling" else []
    with bridge(
        "--metadata-store",
        f"tcp:127.0.0.1:{server_port}",
        *extra,
        f"me/p:{repo}",
        log=tmp_path / "log",
    ) as b:
        wait_for_tree(client, lambda _c, t: t.exists(FEATURE))

        new = commit(repo, "third")
        head = wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{new}\n")
        assert head.message == f"Updating existing branch to {{me/p heads/master[{new}]}}\n"

        old_feature = sha(repo, "feature/x")
        git(repo, "branch", "-D", "feature/x")
        head = wait_for_tree(client, lambda _c, t: not t.exists("me/p/ref/heads/feature"))
        assert head.message == (
            f"Removing deleted branch {{me/p heads/feature/x[{old_feature}]}}\n"
        )
        assert set(files(head.tree())) == {MASTER}

        git(repo, "branch", "new")
        head = wait_for_tree(client, lambda _c, t: t.exists("me/p/ref/heads/new/head"))
        assert head.message == f"Tracking new branch {{me/p heads/new[{new}]}}\n"

        for i in range(20):
            last = commit(repo, f"burst {i}")
        wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{last}\n")
        git(repo, "pack-refs", "--all")  # the refs move to packed-refs: same values
        git(repo, "branch", "packed/after")
        wait_for_tree(client, lambda _c, t: t.exists("me/p/ref/heads/packed/after/head"))
        assert b.proc.poll() is None
    log = b.log()
    assert "Traceback" not in log and "WARNING" not in log and "ERROR" not in log, log
    assert b.proc.returncode == 0


def test_br_22_a_linked_work_tree(tmp_path: Path, server_port: int, client: Connection) -> None:
    """PATH may be a `git worktree add` work tree (its .git is a file, its
    refs live in the main repository): changes are followed there too."""
    main = make_repo(tmp_path / "p")
    linked = tmp_path / "linked"
    git(main, "worktree", "add", "-q", str(linked), "feature/x")
    with bridge(
        "--metadata-store", f"tcp:127.0.0.1:{server_port}", f"me/p:{linked}", log=tmp_path / "log"
    ):
        wait_for_tree(client, lambda _c, t: t.exists(FEATURE))
        new = commit(linked, "on the linked work tree")
        wait_for_tree(client, lambda _c, t: head_of(t, FEATURE) == f"{new}\n")
        newer = commit(main, "on the main one")
        wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{newer}\n")
