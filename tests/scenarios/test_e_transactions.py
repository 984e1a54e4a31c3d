"""Section E of spec/scenarios.md, E11-E32: transactions and the rw tree."""

from __future__ import annotations

from datakit import ninep
from datakit.client.ninep_client import Client
from tests.scenarios.helpers import (
    Stream,
    commit,
    commit_files,
    commit_json,
    connect,
    echo,
    error_of,
    head,
    message_of,
    mode_of,
    parents_of,
    put,
    tx,
)

CHANGED = b"** Conflict **\nChanged on both branches\n"


def tree_of(c: Client, commit_id: str) -> str:
    return commit_json(c, commit_id)["value"]["node"]  # type: ignore[index,no-any-return]


# -- transactions ------------------------------------------------------------------


def test_E11_isolation(client: Client, server: str) -> None:
    h = commit_files(client, {"f": b"old"})
    t = tx(client)
    echo(client, f"{t}/rw/f", b"new")
    client.create(f"{t}/rw/g", b"added")
    assert client.read("branch/master/ro/f") == b"old"
    assert client.ls("branch/master/ro") == ["f"]
    with connect(server) as other:
        assert other.read("branch/master/ro/f") == b"old"
        assert other.ls("branch/master/transactions") == []
        assert error_of(other.walk, f"{t}/rw") == "No such file or directory"
        assert head(other) == h


def test_E12_disconnect_discards(server: str) -> None:
    with connect(server) as a:
        h = commit_files(a, {"f": b"old"})
        t = tx(a)
        echo(a, f"{t}/rw/f", b"uncommitted")
        a.create(f"{t}/rw/g", b"uncommitted")
    with connect(server) as b:
        assert head(b) == h
        assert b.ls("branch/master/transactions") == []
        assert b.ls("branch/master/ro") == ["f"]
        assert b.read("branch/master/ro/f") == b"old"


def test_E13_close_and_unknown_command(client: Client) -> None:
    h = commit_files(client, {"f": b"old"})
    t = tx(client)
    echo(client, f"{t}/rw/f", b"new")
    assert error_of(client.write, f"{t}/ctl", b"frob\n") == 'Unknown command "frob"'
    assert client.ls("branch/master/transactions") == ["t"]
    client.write(f"{t}/ctl", b"close\n")
    assert client.ls("branch/master/transactions") == []
    assert head(client) == h
    assert client.read("branch/master/ro/f") == b"old"


def test_E14_commit_removes_the_directory(client: Client) -> None:
    t = tx(client)
    client.create(f"{t}/rw/f", b"1")
    commit(client, t)
    assert client.ls("branch/master/transactions") == []
    h1 = head(client)
    t = tx(client)  # the same name again
    assert client.read(f"{t}/parents") == f"{h1}\n".encode()
    assert client.read(f"{t}/rw/f") == b"1"


def test_E15_default_and_raw_messages(client: Client) -> None:
    h1 = commit_files(client, {"f": b"1"})
    assert message_of(client, h1) == b"(no commit message)"
    t = tx(client)
    client.write(f"{t}/msg", b"hi\n")  # echo hi > T/msg
    commit(client, t)
    h2 = head(client)
    assert message_of(client, h2) == b"hi\n"
    assert client.read(f"snapshots/{h2}/msg") == b"hi\n\n"


def test_E16_empty_commits(client: Client) -> None:
    h1 = commit_files(client, {"f": b"1"})
    t = tx(client)
    commit(client, t)
    h2 = head(client)
    assert h2 != h1
    assert parents_of(client, h2) == {h1}
    assert tree_of(client, h2) == tree_of(client, h1)


def test_E17_transaction_snapshot_is_fixed(client: Client) -> None:
    commit_files(client, {"f": b"old"})
    t = tx(client, name="slow")
    commit_files(client, {"f": b"new"}, name="fast")
    assert client.read(f"{t}/rw/f") == b"old"
    client.create(f"{t}/rw/g", b"g")
    commit(client, t)
    assert client.read("branch/master/ro/f") == b"new"
    assert client.read("branch/master/ro/g") == b"g"


def test_E18_concurrent_non_conflicting_commits(client: Client) -> None:
    commit_files(client, {"x": b"x0", "y": b"y0"})
    t1 = tx(client, name="t1")
    echo(client, f"{t1}/msg", b"T1")
    t2 = tx(client, name="t2")
    echo(client, f"{t2}/msg", b"T2")
    echo(client, f"{t2}/rw/x", b"x2")
    commit(client, t2)
    t2_commit = head(client)
    echo(client, f"{t1}/rw/y", b"y1")
    commit(client, t1)
    h = head(client)
    assert client.read("branch/master/ro/x") == b"x2"
    assert client.read("branch/master/ro/y") == b"y1"
    assert message_of(client, h) == b"Merge"
    parents = parents_of(client, h)
    assert t2_commit in parents and len(parents) == 2
    (t1_commit,) = parents - {t2_commit}
    assert message_of(client, t1_commit) == b"T1"


def test_E19_concurrent_conflicting_commits(client: Client) -> None:
    commit_files(client, {"x": b"x0"})
    t1 = tx(client, name="t1")
    commit_files(client, {"x": b"x2"}, name="t2")
    h = head(client)
    echo(client, f"{t1}/rw/x", b"x1")
    assert error_of(commit, client, t1).startswith("Merge conflict:")
    assert head(client) == h
    assert client.ls("branch/master/transactions") == ["t1"]
    client.write(f"{t1}/ctl", b"close\n")
    assert client.ls("branch/master/transactions") == []
    assert client.read("branch/master/ro/x") == b"x2"


def test_E20_transaction_dir_is_not_removable(client: Client) -> None:
    t = tx(client)
    assert error_of(client.remove, t) == "Directory is read-only"
    assert client.ls(t) == ["ctl", "diff", "merge", "msg", "origin", "parents", "rw"]


def test_E21_origin(client: Client) -> None:
    t = tx(client)
    assert client.read(f"{t}/origin") == b""
    assert client.stat(f"{t}/origin").length == 0


def test_E22_plain_files_cannot_be_created(client: Client) -> None:
    client.mkdir("branch/master")
    for d in ("branch", "branch/master/transactions", "remotes"):
        assert error_of(client.create, f"{d}/file") == "Can only contain directories"
    assert error_of(client.mkdir, "newdir") == "Directory is read-only"
    assert error_of(client.mkdir, "branch/master/newdir") == "Directory is read-only"
    client.mkdir("branch/master/transactions/t1")
    assert error_of(client.mkdir, "branch/master/transactions/t1") == "Already exists"


# -- the rw tree -------------------------------------------------------------------


def test_E23_create_over_existing_file_truncates(client: Client) -> None:
    t = tx(client)
    client.create(f"{t}/rw/f", b"abc")
    d = client.walk(f"{t}/rw")
    client.rpc(ninep.Tcreate, fid=d, name="f", perm=0o644, mode=ninep.OWRITE)
    assert client.read(f"{t}/rw/f") == b""
    client.write_fid(d, b"xy")  # the fid is open on the new file
    client.clunk(d)
    assert client.read(f"{t}/rw/f") == b"xy"


def test_E24_mkdir_conflicts(client: Client) -> None:
    t = tx(client)
    client.create(f"{t}/rw/f", b"abc")
    client.mkdir(f"{t}/rw/d")
    assert error_of(client.mkdir, f"{t}/rw/d") == "Already exists"
    assert error_of(client.mkdir, f"{t}/rw/f") == "Already exists"
    assert error_of(client.create, f"{t}/rw/d") == "Is a directory"
    assert error_of(client.create, f"{t}/rw/f/inner") == '"f" is not a directory'
    assert error_of(client.mkdir, f"{t}/rw/f/inner") == '"f" is not a directory'
    assert client.read(f"{t}/rw/f") == b"abc"


def test_E25_recursive_directory_removal(client: Client) -> None:
    t = tx(client)
    put(client, f"{t}/rw/d/a/b/file", b"1")
    put(client, f"{t}/rw/d/other", b"2")
    client.create(f"{t}/rw/keep", b"3")
    client.remove(f"{t}/rw/d")
    assert client.ls(f"{t}/rw") == ["keep"]
    assert error_of(client.walk, f"{t}/rw/d") == "No such file or directory"


def test_E26_empty_directories(client: Client) -> None:
    t = tx(client)
    client.mkdir(f"{t}/rw/empty")
    client.create(f"{t}/rw/f", b"1")
    assert client.ls(f"{t}/rw") == ["empty", "f"]
    commit(client, t)
    assert client.ls("branch/master/ro") == ["f"]


def test_E27_executable_bit(client: Client) -> None:
    t = tx(client)
    client.create(f"{t}/rw/f", b"#!/bin/sh\n")
    client.mkdir(f"{t}/rw/dir")
    client.create(f"{t}/rw/dir/x", b"x")
    client.chmod(f"{t}/rw/f", 0o755)
    assert mode_of(client, f"{t}/rw/f") == 0o775
    fid = client.open(f"{t}/rw/f", ninep.OWRITE)
    client.write_fid(fid, b"exit 0\n", offset=10)
    client.clunk(fid)
    assert mode_of(client, f"{t}/rw/f") == 0o775  # writing keeps it executable
    assert error_of(client.chmod, f"{t}/rw/dir", ninep.DMDIR | 0o755) == "Operation not permitted"
    commit(client, t)
    live = Stream(client, "branch/master/watch/f.node/tree.live")
    assert live.line().startswith(b"X-")
    assert mode_of(client, "branch/master/ro/f") == 0o775
    t = tx(client)
    client.chmod(f"{t}/rw/f", 0o644)
    assert mode_of(client, f"{t}/rw/f") == 0o664
    assert client.read(f"{t}/rw/f") == b"#!/bin/sh\nexit 0\n"


def test_E28_symlinks(client: Client, server: str) -> None:
    """Symlinks through 9P2000.u (and Treadlink through 9P2000.L, our addition)."""
    t = tx(client)
    client.create(f"{t}/rw/l", perm=ninep.DMSYMLINK | 0o777, extension="target")
    st = client.stat(f"{t}/rw/l")
    assert st.mode == ninep.DMSYMLINK | 0o775
    assert st.extension == "target"
    commit(client, t)
    live = Stream(client, "branch/master/watch/l.node/tree.live")
    assert live.line().startswith(b"L-")
    assert client.stat("branch/master/ro/l").extension == "target"
    with connect(server, version="9P2000.L") as linux:
        fid = linux.walk("branch/master/ro/l")
        reply = linux.rpc(ninep.Treadlink, fid=fid)
        assert reply.target == "target"  # type: ignore[attr-defined]
    with connect(server, version="9P2000") as legacy:  # a `noextend` mount
        t = tx(legacy)
        assert error_of(
            legacy.create, f"{t}/rw/l2", perm=ninep.DMSYMLINK | 0o777, extension="target"
        ) == "Missing target for symlink!"


def test_E29_zero_fill_and_offsets_in_rw(client: Client) -> None:
    t = tx(client)
    client.create(f"{t}/rw/f")
    fid = client.open(f"{t}/rw/f", ninep.ORDWR)
    client.write_fid(fid, b"x", offset=3)
    assert client.read_fid(fid, 0, 100) == b"\0\0\0x"
    assert client.read_fid(fid, 4, 100) == b""
    assert error_of(client.read_fid, fid, 5, 100) == "Offset 5 beyond end-of-file (len = 4)"


def _many_conflicts(c: Client) -> str:
    """A merge where every path was changed on both sides."""
    paths = ("a", "b", "c", "d", "e", "dir/x", "dir/y", "other/z")
    commit_files(c, {p: b"base" for p in paths})
    c.mkdir("branch/theirs")
    echo(c, "branch/theirs/fast-forward", head(c).encode())
    commit_files(c, {p: b"ours" for p in paths})
    theirs = commit_files(c, {p: b"theirs" for p in paths}, branch="theirs")
    t = tx(c, name="merge")
    echo(c, f"{t}/merge", theirs.encode())
    assert c.read(f"{t}/conflicts") == b"a\nb\nc\nd\ne\ndir/x\ndir/y\nother/z\n"
    return t


def test_E30_conflict_clearing_rules(client: Client) -> None:
    t = _many_conflicts(client)
    rw = f"{t}/rw"
    client.chmod(f"{rw}/a", 0o755)  # chmod does not resolve
    client.rename(f"{rw}/d", "d2")  # nor does rename
    assert client.read(f"{t}/conflicts") == b"a\nb\nc\nd\ne\ndir/x\ndir/y\nother/z\n"
    fid = client.open(f"{rw}/b", ninep.OWRITE)
    client.write_fid(fid, b"resolved")  # write
    client.clunk(fid)
    client.truncate(f"{rw}/c", 0)  # truncate
    client.create(f"{rw}/d", b"again")  # re-create
    client.remove(f"{rw}/e")  # remove
    assert client.read(f"{t}/conflicts") == b"a\ndir/x\ndir/y\nother/z\n"
    client.remove(f"{rw}/dir")  # a directory: only the conflicts below it
    assert client.read(f"{t}/conflicts") == b"a\nother/z\n"
    assert client.read(f"{rw}/a") == CHANGED
    assert mode_of(client, f"{rw}/a") == 0o775


def test_E31_merge_state_rules(client: Client) -> None:
    t = _many_conflicts(client)
    orig = client.read("branch/master/head").decode().strip()
    theirs = head(client, "theirs")
    assert client.read(f"{t}/merge") == b"ok"
    assert client.read(f"{t}/parents") == f"{orig}\n{theirs}\n".encode()
    assert error_of(echo, client, f"{t}/merge", orig.encode()) == "conflicts file is not empty"
    assert error_of(echo, client, f"{t}/merge", b"garbage").startswith('invalid-hash "garbage"')
    assert error_of(echo, client, f"{t}/merge", b"0" * 40) == "No such file or directory"
    assert client.read(f"{t}/parents") == f"{orig}\n{theirs}\n".encode()
    # A merge on a transaction with no parents has an empty base/.
    client.mkdir("branch/empty")
    e = tx(client, "empty")
    echo(client, f"{e}/merge", theirs.encode())
    assert client.ls(f"{e}/base") == []
    assert client.read(f"{e}/parents") == f"{theirs}\n".encode()
    assert client.read(f"{e}/conflicts") == b""


def test_E32_diff_files(client: Client) -> None:
    c1 = commit_files(client, {"a": b"a", "b": b"b"})
    t = tx(client)
    echo(client, f"{t}/rw/a", b"a2")
    client.remove(f"{t}/rw/b")
    client.create(f"{t}/rw/c", b"c")
    assert client.ls(f"{t}/diff") == []
    lines = client.read(f"{t}/diff/{c1}").decode().splitlines()
    assert sorted(lines) == ["* a", "+ c", "- b"]
    commit(client, t)
    c2 = head(client)
    lines = client.read(f"snapshots/{c2}/diff/{c1}").decode().splitlines()
    assert sorted(lines) == ["* a", "+ c", "- b"]
    assert client.read(f"snapshots/{c2}/diff/{c2}") == b""
