"""BR-23: the local bridge never writes to the repository it watches: it
works on read-only files, through a read-only bind mount, and on a bare
repository, and leaves every file as it was (names, modes, sizes, mtimes
and contents), with `git fsck` still clean."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from datakit.client import Connection
from tests.bridges import localbridge
from tests.bridges.localbridge import (
    bridge,
    commit,
    fingerprint,
    head_of,
    make_repo,
    readonly,
    readonly_bind_mount,
    sha,
    wait_for_tree,
    writable,
)
from tests.gitrepo import git

server_port = localbridge.server_port  # fixtures: a real datakit serve (memory, --git)
client = localbridge.client

MASTER = "me/p/ref/heads/master/head"


@contextmanager
def read_only_view(repo: Path, how: str, tmp_path: Path) -> Iterator[Path]:
    """The path the bridge is given: the repository itself (its files made
    read-only by the caller), or a read-only bind mount of it."""
    if how == "files":
        yield repo
        return
    with readonly_bind_mount(repo, tmp_path / "ro") as mounted:
        if mounted is None:
            pytest.skip("mount --bind -o ro is not allowed here")
        yield mounted


@pytest.mark.parametrize("how", ["files", "bind-mount"])
@pytest.mark.parametrize("bare", [False, True], ids=["worktree", "bare"])
def test_br_23_local_bridge_never_writes(
    tmp_path: Path, server_port: int, client: Connection, how: str, bare: bool
) -> None:
    repo = make_repo(tmp_path / "p", bare=bare)
    git(repo, "gc", "-q")  # packed refs and objects as well as loose ones
    git(repo, "branch", "loose")
    readonly(repo)
    before = fingerprint(repo)
    with read_only_view(repo, how, tmp_path) as path:
        with bridge(
            "--metadata-store",
            f"tcp:127.0.0.1:{server_port}",
            "--tags",
            f"me/p:{path}",
            log=tmp_path / "log",
        ) as b:
            wait_for_tree(
                client,
                lambda _c, t: (
                    head_of(t, MASTER) == f"{sha(repo, 'master')}\n"
                    and t.exists("me/p/ref/heads/loose/head")
                    and t.exists("me/p/ref/heads/feature/x/head")
                ),
            )
            # Other commits on github-metadata make the bridge look again.
            with client.branch("github-metadata").transaction() as t:
                t.create_file("unrelated", b"x")
                t.commit("someone else")
            wait_for_tree(client, lambda c, _t: c.message == "someone else\n")
            assert b.stop() == 0
        assert "Traceback" not in b.log() and "WARNING" not in b.log(), b.log()
        assert fingerprint(repo) == before
    writable(repo)
    fsck = git(repo, "fsck", "--strict", "--no-dangling")
    assert "error" not in fsck


def test_br_23_follows_changes_through_a_read_only_mount(
    tmp_path: Path, server_port: int, client: Connection
) -> None:
    """Commits made through the writable path show through the read-only
    mount the bridge watches (inotify watches inodes, not paths)."""
    repo = make_repo(tmp_path / "p")
    with readonly_bind_mount(repo, tmp_path / "ro") as mounted:
        if mounted is None:
            pytest.skip("mount --bind -o ro is not allowed here")
        with bridge(
            "--metadata-store",
            f"tcp:127.0.0.1:{server_port}",
            f"me/p:{mounted}",
            log=tmp_path / "log",
        ) as b:
            wait_for_tree(client, lambda _c, t: t.exists(MASTER))
            new = commit(repo, "third")
            wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{new}\n")
            git(repo, "branch", "-D", "feature/x")
            wait_for_tree(client, lambda _c, t: not t.exists("me/p/ref/heads/feature"))
            assert b.stop() == 0
        assert "Traceback" not in b.log() and "WARNING" not in b.log(), b.log()
