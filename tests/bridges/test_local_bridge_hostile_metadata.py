"""Whatever others write into github-metadata, the local bridge neither
crashes nor loops: it puts its refs back and leaves the rest alone."""

from __future__ import annotations

import time
from pathlib import Path

from datakit.client import Connection
from tests.bridges import localbridge
from tests.bridges.localbridge import bridge, commit, files, head_of, make_repo, sha, wait_for_tree
from tests.gitrepo import git

server_port = localbridge.server_port  # fixtures: a real datakit serve (memory, --git)
client = localbridge.client

MASTER = "me/p/ref/heads/master/head"
FEATURE = "me/p/ref/heads/feature/x/head"


def test_refs_put_back_after_others_break_them(
    tmp_path: Path, server_port: int, client: Connection
) -> None:
    repo = make_repo(tmp_path / "p")
    master, feature = sha(repo, "master"), sha(repo, "feature/x")
    branch = client.branch("github-metadata")
    with branch.transaction() as t:  # before the bridge starts
        t.make_dirs("me/p/ref/heads/master/head")  # a directory where the file goes
        t.create_file("me/p/ref/heads/master/head/x", b"")
        t.make_dirs("me/p/ref/heads/gone")
        t.create_file("me/p/ref/heads/gone/head", b"not a sha\n")
        t.create_file("me/p/ref/heads/gone/.dirty", b"")
        t.make_dirs("me/p/pr/notanumber")
        t.create_file("me/p/.monitor", b"")
        t.make_dirs("other/repo/ref/heads/master")
        t.create_file("other/repo/ref/heads/master/head", b"1234\n")
        t.commit("others")
    with bridge(
        "--metadata-store", f"tcp:127.0.0.1:{server_port}", f"me/p:{repo}", log=tmp_path / "log"
    ) as b:
        head = wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{master}\n")
        assert files(head.tree()) == {
            MASTER: f"{master}\n".encode(),
            FEATURE: f"{feature}\n".encode(),
            "me/p/.monitor": b"",
            "other/repo/ref/heads/master/head": b"1234\n",  # not a configured repo
        }
        assert "Removing deleted branch {me/p heads/gone[not a sha]}" in head.message

        with branch.transaction() as t:  # a file where a directory goes
            t.remove("me/p/ref")
            t.create_file("me/p/ref", b"oops")
            t.commit("break it")
        head = wait_for_tree(client, lambda _c, t: head_of(t, FEATURE) == f"{feature}\n")
        assert head_of(head.tree(), MASTER) == f"{master}\n"

        with branch.transaction() as t:  # a wrong SHA
            t.replace_file(MASTER, b"0" * 40 + b"\n")
            t.commit("wrong")
        head = wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{master}\n")
        assert head.message == f"Updating existing branch to {{me/p heads/master[{master}]}}\n"

        time.sleep(1)  # no loop: nothing more to commit
        assert branch.head() == head
        assert b.proc.poll() is None
    assert "Traceback" not in b.log(), b.log()


def test_a_branch_name_the_store_cannot_hold(
    tmp_path: Path, server_port: int, client: Connection
) -> None:
    """A 300-byte branch name (git keeps it in packed-refs; no filesystem
    name can be that long): logged once and left out; the others go on."""
    repo = make_repo(tmp_path / "p")
    master = sha(repo, "master")
    git(repo, "pack-refs", "--all")
    packed = repo / ".git" / "packed-refs"
    header, *lines = packed.read_text().splitlines()
    long_ref = f"{master} refs/heads/{'a' * 300}"
    packed.write_text("\n".join([header, long_ref, *lines]) + "\n")
    assert "a" * 300 in git(repo, "for-each-ref")
    with bridge(
        "--metadata-store", f"tcp:127.0.0.1:{server_port}", f"me/p:{repo}", log=tmp_path / "log"
    ) as b:
        head = wait_for_tree(client, lambda _c, t: t.exists(FEATURE))
        assert set(files(head.tree())) == {MASTER, FEATURE}
        new = commit(repo, "more")
        head = wait_for_tree(client, lambda _c, t: head_of(t, MASTER) == f"{new}\n")
        time.sleep(1)  # no loop
        assert client.branch("github-metadata").head() == head
    log = b.log()
    assert log.count("cannot be stored") == 1, log
    assert "Traceback" not in log, log
