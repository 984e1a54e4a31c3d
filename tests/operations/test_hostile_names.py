"""Issue 8, points 1, 2 and 14 against a real `datakit serve --git` process:

* creating, making a directory, renaming or symlinking to a name git refuses
  is EINVAL with a clear message (9P2000.u) or errno (9P2000.L), lookups of
  such names are ENOENT, and the transaction still commits;
* a repository where git itself wrote trees DataKit would never write (names
  git refuses, a name with NUL that breaks the tree's parse) serves its
  branch after a restart: bad entries hidden and kept, the unparseable tree
  EIO on its own, commits on top work;
* a tree 4,096 levels deep commits, reads back and diffs through 9p;
* a branch name too long for the ref store is ENAMETOOLONG.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from datakit import ninep
from datakit.client import BackendError, NameTooLong, connect
from datakit.client.ninep_client import Client, RemoteError
from tests.gitrepo import blob, commit_tree, git, git_bytes, init_bare, literal_tree
from tests.operations.procs import datakit_process

TX = ("branch", "master", "transactions", "t")
REFUSED = [".git", ".GIT", "git~1", ".git.", "a\0b", ".", ".."]


@contextmanager
def server(repo: Path, version: str = "9P2000.u") -> Iterator[tuple[int, Client]]:
    with datakit_process("--git", str(repo)) as (port, _, _proc):
        with Client.connect(f"tcp://127.0.0.1:{port}", version=version, timeout=60) as client:
            yield port, client


def refused(fn: object, *args: object, code: int = errno.EINVAL) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.errno == code, info.value
    return info.value


def symlink(client: Client, path: tuple[str, ...]) -> None:
    client.create(path, perm=ninep.DMSYMLINK | 0o777, extension="target")


def commit(client: Client, message: bytes = b"m") -> None:
    client.write((*TX, "msg"), message)
    client.write((*TX, "ctl"), b"commit", truncate=False)


# -- point 1 -------------------------------------------------------------------


def test_names_git_refuses_are_einval_through_9p(tmp_path: Path) -> None:
    repo = tmp_path / "db.git"
    with server(repo) as (port, client):
        client.mkdir(("branch", "master"))
        client.mkdir(TX)
        rw = (*TX, "rw")
        client.create((*rw, "f"), b"f")
        client.create((*rw, "l"), perm=ninep.DMSYMLINK | 0o777, extension="f")
        for name in REFUSED:
            if name not in (".", ".."):  # the kernel never sends those; we test them in .L
                for err in (
                    refused(client.mkdir, (*rw, name)),
                    refused(client.create, (*rw, name), b"x"),
                    refused(symlink, client, (*rw, name)),
                    refused(client.rename, (*rw, "f"), name),
                ):
                    assert err.message.startswith("Invalid name "), err.message
                refused(client.walk, (*rw, name), code=errno.ENOENT)
        err = refused(client.rename, (*rw, "l"), ".gitmodules")
        assert "symbolic link" in err.message
        assert refused(client.mkdir, (*rw, "x" * 256), code=errno.ENAMETOOLONG).message.startswith(
            "Name too long (256 bytes"
        )
        # The same through 9P2000.L: Rlerror carries only the errno.
        with Client.connect(f"tcp://127.0.0.1:{port}", version="9P2000.L", timeout=60) as dotl:
            dotl.mkdir(("branch", "master"))
            dotl.mkdir((*TX[:-1], "l"))
            lrw = (*TX[:-1], "l", "rw")
            dirfid = dotl.walk(lrw)
            for name in REFUSED:
                refused(dotl.mkdir, (*lrw, name))
                refused(dotl.create, (*lrw, name), b"x")
                refused(symlink, dotl, (*lrw, name))
            dotl.create((*lrw, "g"), b"g")
            for name in REFUSED:
                fields = {"olddirfid": dirfid, "oldname": "g", "newdirfid": dirfid, "newname": name}
                refused(lambda f=fields: dotl.rpc(ninep.Trenameat, **f))
            dotl.clunk(dirfid)
        # Nothing half-made; the transaction commits; git is happy.
        assert sorted(client.ls(rw)) == ["f", "l"]
        client.create((*rw, "good"), b"g")
        commit(client)
        assert sorted(client.ls(("branch", "master", "ro"))) == ["f", "good", "l"]
    git(repo, "fsck", "--strict", "--no-dangling")


# -- point 2 -------------------------------------------------------------------


def test_trees_git_wrote_with_bad_entries_stay_local(tmp_path: Path) -> None:
    repo = tmp_path / "db.git"
    init_bare(repo)
    f = blob(repo, b"file\n")
    sub = literal_tree(repo, [(b"100644", b"inner", f)])
    broken = literal_tree(repo, [(b"100644", b"a\0b", f), (b"100644", b"z", f)])
    root_entries = [
        (b"100644", b"", f),
        (b"100644", b".", f),
        (b"40000", b"..", sub),
        (b"40000", b".git", sub),
        (b"100644", b"a/b", f),
        (b"40000", b"broken", broken),
        (b"100644", b"good", f),
        (b"40000", b"sub", sub),
    ]
    root = literal_tree(repo, root_entries)
    commit_tree(repo, root, "bad", branch="master")

    for round_ in (1, 2):  # the second time on the commit made the first time
        with datakit_process("--git", str(repo)) as (port, _, _proc):
            with connect(f"tcp://127.0.0.1:{port}", timeout=60) as conn:
                master = conn.branch("master")
                head = master.head()
                assert head is not None
                tree = head.tree()
                expected = ["broken", "good", "sub"] if round_ == 1 else ["broken", "new", "sub"]
                assert tree.read_dir("") == expected
                assert tree.read_file("sub/inner") == b"file\n"
                assert not tree.exists(".git") and not tree.exists("git~1")
                with pytest.raises(BackendError, match=f"corrupt tree {broken}: ") as info:
                    tree.read_dir("broken")
                assert info.value.errno == errno.EIO
                if round_ == 1:
                    with master.transaction() as t:
                        t.remove("good")
                        t.create_file("new", b"n")
                        t.create_file("sub/more", b"m")
                        with pytest.raises(BackendError, match="corrupt tree"):
                            t.create_file("broken/x", b"x")
                        t.commit("on top")
    new_root = git(repo, "rev-parse", "master^{tree}")
    raw = git_bytes(repo, "cat-file", "tree", new_root)
    for mode, name, sha in root_entries:
        if name not in (b"good", b"sub"):  # kept byte for byte, untouched subtrees too
            assert mode + b" " + name + b"\0" + bytes.fromhex(sha) in raw


def test_a_nul_name_through_9p2000L_is_refused_and_a_restart_reads_the_branch(
    tmp_path: Path,
) -> None:
    """The original report: `a\\0b` created over 9P2000.L made the branch
    unreadable after a restart. Now the creation is EINVAL."""
    repo = tmp_path / "db.git"
    with server(repo, "9P2000.L") as (_, client):
        client.mkdir(("branch", "master"))
        client.mkdir(TX)
        client.mkdir((*TX, "rw", "d"))
        refused(client.create, (*TX, "rw", "d", "a\0b"), b"x")
        client.create((*TX, "rw", "d", "a"), b"x")
        commit(client)
    with server(repo, "9P2000.L") as (_, client):
        assert client.ls(("branch", "master", "ro", "d")) == ["a"]
        assert client.read(("branch", "master", "ro", "d", "a")) == b"x"
    git(repo, "fsck", "--strict", "--no-dangling")


# -- point 14 ------------------------------------------------------------------

DEPTH = 4096  # git's limit: a path of 4,096 components


def test_a_tree_4096_levels_deep_through_9p(tmp_path: Path) -> None:
    repo = tmp_path / "db.git"
    with server(repo, "9P2000.L") as (port, client):
        client.mkdir(("branch", "master"))
        client.mkdir(TX)
        # One level at a time from the directory above (a full path from
        # the root would be 4,096 steps long each time).
        fid = client.walk((*TX, "rw"))
        for _ in range(DEPTH - 1):
            client.rpc(ninep.Tmkdir, dfid=fid, name="d", mode=0o755, gid=0)
            below = client.walk(["d"], fid=fid)
            client.clunk(fid)
            fid = below
        client.rpc(ninep.Tlcreate, fid=fid, name="f", flags=1, mode=0o644, gid=0)
        client.write_fid(fid, b"bottom")
        client.clunk(fid)
        commit(client, b"deep")

        chain = "/".join(["d"] * (DEPTH - 1))
        with connect(f"tcp://127.0.0.1:{port}", timeout=120) as conn:
            master = conn.branch("master")
            first = master.head()
            assert first is not None
            assert first.tree().read_file(f"{chain}/f") == b"bottom"
            with master.transaction() as t:
                t.create_file(f"{chain}/g", b"more")
                t.commit("deeper")
            second = master.head()
            assert second is not None
            assert [d.path for d in second.diff(first)] == [f"{chain}/g"]
            assert second.tree().read_file(f"{chain}/g") == b"more"
    git(repo, "fsck", "--strict", "--no-dangling")
    assert git(repo, "ls-tree", "-r", "--name-only", "master").split("\n") == [
        f"{chain}/f",
        f"{chain}/g",
    ]


def test_branch_names_too_long_are_enametoolong(tmp_path: Path) -> None:
    repo = tmp_path / "db.git"
    with server(repo) as (port, client):
        err = refused(client.mkdir, ("branch", "b" * 251), code=errno.ENAMETOOLONG)
        assert err.message.startswith("Branch name too long")
        client.mkdir(("branch", "b" * 250))
        client.mkdir(("branch", "b" * 250, "transactions", "t"))
        client.create(("branch", "b" * 250, "transactions", "t", "rw", "f"), b"x")
        client.write(("branch", "b" * 250, "transactions", "t", "ctl"), b"commit", truncate=False)
        assert client.read(("branch", "b" * 250, "ro", "f")) == b"x"
        with connect(f"tcp://127.0.0.1:{port}", timeout=60) as conn:
            with pytest.raises(NameTooLong):
                conn.branch("c" * 251)
    assert git(repo, "rev-parse", "b" * 250)
