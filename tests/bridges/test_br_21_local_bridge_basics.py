"""BR-21: the local bridge publishes every branch of a real repository."""

from __future__ import annotations

from pathlib import Path

from datakit.client import Connection
from tests.bridges import localbridge
from tests.bridges.localbridge import (
    bridge,
    files,
    make_repo,
    sha,
    wait_for_tree,
)

server_port = localbridge.server_port  # fixtures: a real datakit serve (memory, --git)
client = localbridge.client


def test_br_21_local_bridge_basics(tmp_path: Path, server_port: int, client: Connection) -> None:
    repo = make_repo(tmp_path / "p")
    master, feature = sha(repo, "master"), sha(repo, "feature/x")
    assert master != feature
    with bridge(
        "--metadata-store", f"tcp:127.0.0.1:{server_port}", f"me/p:{repo}", log=tmp_path / "log"
    ) as b:
        head = wait_for_tree(client, lambda _c, t: t.exists("me/p/ref/heads/master/head"))
        assert files(head.tree()) == {
            "me/p/ref/heads/master/head": f"{master}\n".encode(),
            "me/p/ref/heads/feature/x/head": f"{feature}\n".encode(),
        }
        # One commit, listing both branches, as upstream's sync.ml words it.
        assert head.parents == []
        assert head.message == (
            f"Tracking new branch {{me/p heads/feature/x[{feature}]}}\n"
            f"Tracking new branch {{me/p heads/master[{master}]}}\n"
        )
        assert b.proc.poll() is None
    assert "Traceback" not in b.log()


def test_br_21_several_repositories_and_tags(
    tmp_path: Path, server_port: int, client: Connection
) -> None:
    """Two repositories in one commit; --tags publishes tags, annotated ones
    peeled to their commit (a tag of a tag too; a tag of a blob is left out)."""
    one = make_repo(tmp_path / "one")
    two = make_repo(tmp_path / "two", bare=True)
    from tests.gitrepo import git

    git(one, "tag", "v1", "master~1")
    git(one, "tag", "-a", "-m", "release", "v2", "master")
    git(one, "tag", "-a", "-m", "again", "v3", "v2")
    blob = git(one, "hash-object", "-w", "--stdin", input=b"x")
    git(one, "tag", "blobtag", blob)
    with bridge(
        "--metadata-store",
        f"tcp://127.0.0.1:{server_port}",
        "--tags",
        f"me/one:{one}",
        f"you/two:{two}",
        log=tmp_path / "log",
    ):
        head = wait_for_tree(client, lambda _c, t: t.exists("you/two/ref/heads/master/head"))
    got = files(head.tree())
    assert got["me/one/ref/tags/v1/head"] == f"{sha(one, 'master~1')}\n".encode()
    assert got["me/one/ref/tags/v2/head"] == f"{sha(one, 'master')}\n".encode()
    assert got["me/one/ref/tags/v3/head"] == f"{sha(one, 'master')}\n".encode()
    assert "me/one/ref/tags/blobtag/head" not in got
    assert got["you/two/ref/heads/feature/x/head"] == f"{sha(two, 'feature/x')}\n".encode()
    assert not any(p.startswith("you/two/ref/tags") for p in got)  # the bare one has none
    assert head.message.count("Tracking new branch") == 7
