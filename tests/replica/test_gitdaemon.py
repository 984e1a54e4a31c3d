"""A replica of a plain repository served by `git daemon`: any remote our
fetch accepts can be followed, not only a DataKit primary."""

from __future__ import annotations

from pathlib import Path

from tests.gitdaemon import serve_repository
from tests.gitrepo import git
from tests.replica.helpers import client, heads, log_text, replica, wait_for


def test_a_replica_follows_git_daemon(tmp_path: Path) -> None:
    repo = tmp_path / "plain"
    repo.mkdir()
    log = tmp_path / "replica.log"
    with serve_repository(repo) as remote, open(log, "wb") as out:
        # A branch DataKit cannot hold (a name outside [A-Za-z0-9/_.-]) is
        # left out, with one warning; the others are followed.
        git(repo, "branch", "wip+1")
        with replica(remote.url, "--git", str(tmp_path / "replica.git"), log=out) as (r, _):
            wait_for(lambda: heads(r["9p"]) == {"master": remote.master}, "master")
            (repo / "foo").write_text("changed\n")
            git(repo, "commit", "-q", "-am", "second")
            second = git(repo, "rev-parse", "master")
            wait_for(lambda: heads(r["9p"]).get("master") == second, "the second commit")
            with client(r["9p"]) as reader:
                tree = reader.branch("master").head().tree()  # type: ignore[union-attr]
                assert tree.read_file("foo") == b"changed\n"
                assert tree.read_file("x") == b"x\n"
            git(repo, "branch", "stable", remote.master)
            wait_for(lambda: heads(r["9p"]).get("stable") == remote.master, "a new branch")
        assert log_text(log).count("'wip+1'") == 1
    # The replica's own repository is a plain Git repository too.
    replica_git = tmp_path / "replica.git"
    assert git(replica_git, "rev-parse", "master") == second
    git(replica_git, "fsck", "--strict")
