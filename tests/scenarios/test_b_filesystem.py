"""Section B of spec/scenarios.md: the filesystem over raw 9p (upstream's 9p suite).

Every test starts from an empty in-memory store and a fresh connection (the
`client` fixture); scenarios that upstream runs as one continuing sequence
(B6-B9, B12-B14, B17-B22, B26-B30) replay the earlier steps here so that each
test stands alone.
"""

from __future__ import annotations

import logging

from datakit import ninep
from datakit.client.ninep_client import Client
from tests.scenarios.helpers import (
    EMPTY_TREE,
    ROOT_ENTRIES,
    UNKNOWN_COMMIT,
    GitRemote,
    Stream,
    assert_silent,
    cancel,
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
    symlink,
    tx,
    wstat,
)

MAKEFILE_BLOB = "d81e367f87ee314bcd3e449b1c6641efda5bc269"  # `all: build`
SRC_TREE = "acaa8ac97706d94e012da475e8a63d647011a72c"  # src/Makefile = `all: build`
DOC_TREE = "a3e8adf6d194bfbdec2ca73aebe0990edee2ddbf"  # README = `Instructions`


def test_B01_root_listing(client: Client) -> None:
    assert set(client.ls("/")) == ROOT_ENTRIES
    assert len(client.ls("/")) == 6


def test_B02_create_branch_directory(client: Client) -> None:
    client.mkdir("branch/master")
    assert client.ls("branch") == ["master"]


def test_B03_dotdot_in_walks(client: Client) -> None:
    client.mkdir("branch/master")
    fid = client.walk(("branch", "master", "..", ".."))
    client.rpc(ninep.Topen, fid=fid, mode=ninep.OREAD)
    names = []
    offset = 0
    while data := client.read_fid(fid, offset):
        offset += len(data)
        names += [s.name for s in ninep.decode_stats(data, client.dialect)]
    client.clunk(fid)
    assert set(names) == ROOT_ENTRIES


def test_B04_first_commit(client: Client) -> None:
    client.mkdir("branch/master")
    client.mkdir("branch/master/transactions/init")
    t = "branch/master/transactions/init"
    client.mkdir(f"{t}/rw/src")
    client.create(f"{t}/rw/src/Makefile", b"all: build test")
    client.write(f"{t}/msg", b"My commit")
    assert client.read(f"{t}/parents") == b""
    # `echo commit > ctl`: wstat length 0, then the write.
    fid = client.walk(f"{t}/ctl")
    wstat(client, fid, length=0)
    client.rpc(ninep.Topen, fid=fid, mode=ninep.OWRITE | ninep.OTRUNC)
    client.write_fid(fid, b"commit\n")
    client.clunk(fid)
    assert client.stat("branch/master/ro/src/Makefile").length == 15
    h = head(client)
    assert message_of(client, h) == b"My commit"
    assert commit_json(client, h)["value"]["info"]["message"] == "My commit"  # type: ignore[index]


def test_B05_qid_kinds_along_a_walk(client: Client) -> None:
    client.mkdir("branch/master")
    fid = client.new_fid()
    names = ("branch", "master", "head")
    reply = client.rpc(ninep.Twalk, fid=client.root, newfid=fid, wnames=names)
    assert isinstance(reply, ninep.Rwalk)
    assert [bool(q.type & ninep.QTDIR) for q in reply.qids] == [True, True, False]
    client.clunk(fid)


def test_B06_watch_empty_root(client: Client) -> None:
    client.mkdir("branch/master")
    root = Stream(client, "branch/master/watch/tree.live")
    assert root.line() == f"D-{EMPTY_TREE}\n".encode()


def test_B07_watch_missing_path(client: Client) -> None:
    client.mkdir("branch/master")
    doc = Stream(client, "branch/master/watch/doc.node/tree.live")
    assert doc.line() == b"\n"


def test_B08_watch_file_hash(client: Client) -> None:
    commit_files(client, {"src/Makefile": b"all: build"})
    mk = Stream(client, "branch/master/watch/src.node/Makefile.node/tree.live")
    assert mk.line() == f"F-{MAKEFILE_BLOB}\n".encode()


def test_B09_watch_updates(client: Client, server: str) -> None:
    # The reader connection only reads streams; commits come from another one
    # (a commit must not be answered while one of our reads is in flight).
    client.mkdir("branch/master")
    root = Stream(client, "branch/master/watch/tree.live")
    doc = Stream(client, "branch/master/watch/doc.node/tree.live")
    assert root.line() == f"D-{EMPTY_TREE}\n".encode()
    assert doc.line() == b"\n"
    with connect(server) as writer:
        commit_files(writer, {"src/Makefile": b"all: build"})
        assert root.line() == f"D-{SRC_TREE}\n".encode()
        mk = Stream(client, "branch/master/watch/src.node/Makefile.node/tree.live")
        assert mk.line() == f"F-{MAKEFILE_BLOB}\n".encode()
        commit_files(writer, {"doc/README": b"Instructions"})
        assert doc.line() == f"D-{DOC_TREE}\n".encode()
        assert writer.ls(f"trees/D-{DOC_TREE}") == ["README"]
        tag = mk.start_read()
        assert_silent(client)  # Makefile unchanged: its stream stays blocked
        cancel(client, tag)


def test_B10_read_past_end_of_static_file(client: Client) -> None:
    t = tx(client)
    fid = client.open(f"{t}/origin", ninep.OREAD)
    assert error_of(client.read_fid, fid, 100, 10) == "Offset 100 beyond end-of-file (len = 0)"


def test_B11_rename_branch(client: Client, server: str) -> None:
    with connect(server) as other:
        commit_files(other, {"key": b"value"}, branch="old")
    client.mkdir("branch/old")
    client.rename("branch/old", "new")
    assert client.ls("branch") == ["new"]
    assert client.stat("branch/new").name == "new"
    with connect(server) as other:  # what the store holds
        assert other.ls("branch") == ["new"]
        assert other.read("branch/new/ro/key") == b"value"
        assert not other.exists("branch/old")
    client.remove("branch/new")
    with connect(server) as other:
        assert other.ls("branch") == []


def _renamed_file(c: Client) -> tuple[str, int]:
    """B12: `rw/old` renamed to `new` through a fid that stays open for B13-B14."""
    t = tx(c)
    c.create(f"{t}/rw/old", b"data")
    fid = c.walk(f"{t}/rw/old")
    wstat(c, fid, name="new")
    return t, fid


def test_B12_rename_file_in_rw(client: Client) -> None:
    t, _ = _renamed_file(client)
    assert client.ls(f"{t}/rw") == ["new"]
    assert client.read(f"{t}/rw/new") == b"data"


def test_B13_rename_onto_directory_fails(client: Client) -> None:
    t, fid = _renamed_file(client)
    client.mkdir(f"{t}/rw/dir")
    client.create(f"{t}/rw/dir/precious", b"keep")
    assert error_of(wstat, client, fid, name="dir") == "Is a directory"
    assert client.read(f"{t}/rw/dir/precious") == b"keep"


def test_B14_rename_of_deleted_source_fails(client: Client) -> None:
    t, fid = _renamed_file(client)
    client.mkdir(f"{t}/rw/dir")
    client.create(f"{t}/rw/dir/precious", b"keep")
    client.remove(f"{t}/rw/new")
    assert error_of(wstat, client, fid, name="reborn") == "No such file or directory"
    commit(client, t)
    assert client.ls("branch/master/ro") == ["dir"]


def test_B15_truncate_via_wstat(client: Client) -> None:
    t = tx(client)
    client.create(f"{t}/rw/file", b"Hello", perm=0o755)
    for length, content in [(4, b"Hell"), (4, b"Hell"), (6, b"Hell\0\0"), (0, b"")]:
        client.truncate(f"{t}/rw/file", length)
        assert client.read(f"{t}/rw/file") == content
    assert mode_of(client, f"{t}/rw/file") == 0o775


def test_B16_head_of_branch_without_commits(client: Client) -> None:
    client.mkdir("branch/master")
    assert client.read("branch/master/head") == b"\n"


def test_B17_first_commit_has_no_parents(client: Client) -> None:
    h1 = commit_files(client, {"file": b"1"})
    assert client.read(f"snapshots/{h1}/parents") == b""


def test_B18_second_commit_parent(client: Client) -> None:
    h1 = commit_files(client, {"file": b"1"})
    h2 = commit_files(client, {"file": b"2"})
    assert client.read(f"snapshots/{h2}/parents") == f"{h1}\n".encode()


def _dev_on_master(c: Client) -> tuple[str, str, str]:
    """B17-B19: master at commit1 then commit2, dev at commit3 whose parent is commit2."""
    commit1 = commit_files(c, {"file": b"1"})
    commit2 = commit_files(c, {"file": b"2"})
    t = tx(c, "dev")
    c.create(f"{t}/rw/file", b"dev")
    echo(c, f"{t}/parents", f"{commit2}\n".encode())
    commit(c, t)
    return commit1, commit2, head(c, "dev")


def test_B19_setting_parents_by_hand(client: Client) -> None:
    _, commit2, commit3 = _dev_on_master(client)
    assert client.read(f"snapshots/{commit3}/parents") == f"{commit2}\n".encode()
    assert client.read("branch/dev/ro/file") == b"dev"


def test_B20_invalid_parent_text(client: Client) -> None:
    commit_files(client, {"file": b"1"})
    t = tx(client, "dev")
    echo(client, f"{t}/parents", b"hello")
    assert error_of(commit, client, t).startswith('invalid-hash "hello"')
    assert client.ls("branch/dev/transactions") == ["t"]
    client.write(f"{t}/ctl", b"close\n")
    assert client.ls("branch/dev/transactions") == []
    assert head(client, "dev") == ""


def test_B21_unknown_parent(client: Client) -> None:
    commit_files(client, {"file": b"1"})
    t = tx(client, "dev")
    echo(client, f"{t}/parents", UNKNOWN_COMMIT.encode())
    assert error_of(commit, client, t) == "No such file or directory"
    client.write(f"{t}/ctl", b"close\n")
    assert head(client, "dev") == ""


def test_B22_nested_transactions_and_automatic_merge(client: Client) -> None:
    _, commit2, commit3 = _dev_on_master(client)
    t1 = tx(client, "master", "t1")
    echo(client, f"{t1}/msg", b"From outer")
    t2 = tx(client, "master", "t2")
    echo(client, f"{t2}/msg", b"From inner")
    client.create(f"{t2}/rw/from_inner", b"inner")
    commit(client, t2)
    after_inner = head(client)
    client.create(f"{t1}/rw/from_outer", b"outer")
    parents = client.read(f"{t1}/parents")
    assert parents == f"{commit2}\n".encode()
    echo(client, f"{t1}/parents", parents + f"{commit3}\n".encode())
    commit(client, t1)

    h = head(client)
    merged = parents_of(client, h)
    assert after_inner in merged and len(merged) == 2
    (outer,) = merged - {after_inner}
    assert message_of(client, after_inner) == b"From inner"
    assert parents_of(client, after_inner) == {commit2}
    assert message_of(client, outer) == b"From outer"
    assert parents_of(client, outer) == {commit2, commit3}
    assert set(client.ls("branch/master/ro")) == {"file", "from_inner", "from_outer"}


def test_B23_merge_through_merge_file(client: Client) -> None:
    a = commit_files(client, {"file": b"from-master"})
    client.mkdir("branch/pr")
    assert error_of(echo, client, "branch/pr/fast-forward", UNKNOWN_COMMIT.encode()) == (
        "No such file or directory"
    )
    echo(client, "branch/pr/fast-forward", a.encode())
    assert head(client, "pr") == a
    t = tx(client, "pr")
    fid = client.open(f"{t}/rw/file", ninep.OWRITE)
    client.write_fid(fid, b"+pr", offset=len(b"from-master"))
    client.clunk(fid)
    commit(client, t)
    b = head(client, "pr")

    t = tx(client, "master")
    client.create(f"{t}/rw/mine", b"pre-merge")
    echo(client, f"{t}/merge", b.encode())
    assert client.read(f"{t}/ours/mine") == b"pre-merge"
    assert client.read(f"{t}/theirs/file") == b"from-master+pr"
    assert client.read(f"{t}/base/file") == b"from-master"
    commit(client, t)
    h = head(client)
    assert parents_of(client, h) == {a, b}
    assert client.read("branch/master/ro/file") == b"from-master+pr"
    assert client.read("branch/master/ro/mine") == b"pre-merge"


def test_B24_merge_of_file_kinds(client: Client) -> None:
    executable = 0o775
    symlink_mode = ninep.DMSYMLINK | 0o775
    t = tx(client)
    client.create(f"{t}/rw/a", b"from-master", perm=0o755)
    assert mode_of(client, f"{t}/rw/a") == executable
    symlink(client, f"{t}/rw/b", "from-master")
    client.create(f"{t}/rw/c", b"from-master", perm=0o755)
    commit(client, t)
    a = head(client)

    client.mkdir("branch/pr")
    t = tx(client, "pr")
    echo(client, f"{t}/merge", a.encode())
    assert mode_of(client, f"{t}/rw/a") == executable
    client.chmod(f"{t}/rw/b", 0o755)
    client.remove(f"{t}/rw/c")
    symlink(client, f"{t}/rw/c", "foo")
    commit(client, t)
    b = head(client, "pr")
    assert parents_of(client, b) == {a}

    t = tx(client, "master")
    client.chmod(f"{t}/rw/c", 0o644)
    echo(client, f"{t}/merge", b.encode())
    assert mode_of(client, f"{t}/ours/a") == executable
    assert mode_of(client, f"{t}/ours/b") == symlink_mode
    assert client.stat(f"{t}/ours/b").extension == "from-master"
    assert mode_of(client, f"{t}/theirs/b") == executable
    assert mode_of(client, f"{t}/rw/a") == executable
    assert mode_of(client, f"{t}/rw/b") == executable
    assert mode_of(client, f"{t}/rw/c") == 0o664
    assert client.read(f"{t}/rw/c") == b"** Conflict **\nChanged on both branches\n"
    echo(client, f"{t}/rw/c", b"Resolved")
    client.chmod(f"{t}/rw/c", 0o755)
    commit(client, t)
    assert mode_of(client, "branch/master/ro/c") == executable
    assert client.read("branch/master/ro/c") == b"Resolved"


def test_B25_merge_into_empty_branch(client: Client) -> None:
    h = commit_files(client, {"file": b"data"})
    client.mkdir("branch/new")
    t = tx(client, "new")
    echo(client, f"{t}/merge", h.encode())
    commit(client, t)
    assert client.ls("branch/new/ro") == ["file"]
    new = head(client, "new")
    assert parents_of(client, new) == {h}
    assert commit_json(client, new)["value"]["node"] == commit_json(client, h)["value"]["node"]  # type: ignore[index]


BASE = {
    "a": b"a-from-base", "b": b"b-from-base", "c": b"c-from-base", "d": b"d-from-base",
    "e": b"e-from-base", "f": b"f-from-base", "dir/a": b"dir/a", "dir2/b": b"dir2/b",
}
OURS = {
    "a": b"a-ours", "b": b"b-from-base", "c": b"c-ours", "e": b"e-from-base",
    "g": b"g-same", "h": b"h-ours", "dir": b"file dir", "dir2/b": b"dir2/b modified",
}
THEIRS = {
    "a": b"a-theirs", "b": b"b-theirs", "c": b"c-from-base", "d": b"d-from-base",
    "f": b"f-theirs", "g": b"g-same", "h": b"h-theirs", "dir/a": b"dir/a modified",
    "dir2": b"file dir2",
}


def _conflicting_merge(c: Client) -> str:
    """B26: the base/ours/theirs table of filesystem.md 4.2, merged in a master transaction."""
    base = commit_files(c, BASE)
    c.mkdir("branch/theirs")
    echo(c, "branch/theirs/fast-forward", base.encode())
    everything = ("a", "b", "c", "d", "e", "f", "dir", "dir2")
    commit_files(c, OURS, remove=everything)
    theirs = commit_files(c, THEIRS, branch="theirs", remove=everything)
    t = tx(c, "master", "merge")
    echo(c, f"{t}/merge", theirs.encode())
    return t


def test_B26_conflict_detection(client: Client) -> None:
    t = _conflicting_merge(client)
    before = head(client)
    assert error_of(commit, client, t) == "conflicts file is not empty"
    assert head(client) == before
    assert client.ls("branch/master/transactions") == ["merge"]


def test_B27_merged_rw_content(client: Client) -> None:
    t = _conflicting_merge(client)
    rw = f"{t}/rw"
    assert client.ls(rw) == ["a", "b", "c", "dir", "dir2", "f", "g", "h"]
    assert client.read(f"{rw}/a") == b"** Conflict **\nChanged on both branches\n"
    assert client.read(f"{rw}/b") == b"b-theirs"
    assert client.read(f"{rw}/c") == b"c-ours"
    assert client.read(f"{rw}/f") == b"** Conflict **\noption: add/del\n"
    assert client.read(f"{rw}/g") == b"g-same"
    assert client.read(f"{rw}/h") == b"** Conflict **\ndefault: add/add and no common ancestor\n"
    assert client.read(f"{rw}/dir") == b"** Conflict **\nFile vs dir\n"
    assert client.read(f"{rw}/dir2") == b"** Conflict **\nFile vs dir\n"


def test_B28_conflicts_file(client: Client) -> None:
    t = _conflicting_merge(client)
    assert client.read(f"{t}/conflicts") == b"a\ndir\ndir2\nf\nh\n"


def _resolve(c: Client, t: str) -> None:
    """B29: remove a, dir, dir2; copy theirs/f into rw/f; remove h."""
    for name in ("a", "dir", "dir2"):
        c.remove(f"{t}/rw/{name}")
    echo(c, f"{t}/rw/f", c.read(f"{t}/theirs/f"))  # wstat length 0, then write
    assert c.read(f"{t}/conflicts") == b"h\n"
    c.remove(f"{t}/rw/h")
    assert c.read(f"{t}/conflicts") == b""


def test_B29_resolving_conflicts(client: Client) -> None:
    t = _conflicting_merge(client)
    _resolve(client, t)


def test_B30_committing_resolved_merge(client: Client) -> None:
    t = _conflicting_merge(client)
    _resolve(client, t)
    commit(client, t)
    assert client.ls("branch/master/ro") == ["b", "c", "f", "g"]
    assert client.read("branch/master/ro/f") == b"f-theirs"
    assert client.ls("branch/master/transactions") == []


def test_B31_stable_inode_numbers(client: Client) -> None:
    """Same path, same view, same qid path (design.md: stable qids, for `cp` and `find`)."""
    t = tx(client)
    client.create(f"{t}/rw/file")
    first = client.stat(f"{t}/rw/file").qid.path
    assert client.stat(f"{t}/rw/file").qid.path == first
    commit(client, t)
    ro = client.stat("branch/master/ro/file").qid.path
    assert client.stat("branch/master/ro/file").qid.path == ro


def test_B32_remote_fetch(client: Client, git_remote: GitRemote) -> None:
    """Fetch from a real `git daemon` on loopback.

    The spec's hash (ecf6b63…) comes from upstream's fixture repository; ours
    is built at test time, so the expected hash is what `git rev-parse` says.
    """
    client.mkdir("remotes/origin")
    assert client.ls("remotes") == ["origin"]
    assert set(client.ls("remotes/origin")) == {"url", "fetch", "head"}
    echo(client, "remotes/origin/url", git_remote.url.encode())
    echo(client, "remotes/origin/fetch", b"master")
    first = Stream(client, "remotes/origin/head")
    assert first.line() == f"{git_remote.master}\n".encode()
    again = Stream(client, "remotes/origin/head")
    assert again.line() == f"{git_remote.master}\n".encode()
    assert client.ls(f"snapshots/{git_remote.master}/ro") == ["foo", "x"]
    assert client.read(f"snapshots/{git_remote.master}/ro/foo") == b"foo\n"


def test_B33_log_levels(client: Client) -> None:
    """Log levels through `debug/src/<source>/level`.

    Upstream's test source `test.debug` does not exist here: our sources are
    the server's own loggers.  We use one of them, first set to `quiet`
    (logging disabled), and restore it afterwards since levels are global.
    """
    source = "datakit.push"
    level = f"debug/src/{source}/level"
    logger = logging.getLogger(source)
    saved = logger.level
    try:
        echo(client, level, b"quiet\n")
        assert client.read(level) == b"quiet\n"
        steps = [(b"debug\n", b"debug\n"), (b"info", b"info\n"), (b"quiet", b"quiet\n")]
        for written, read in steps:
            echo(client, level, written)  # truncate + write
            assert client.read(level) == read
    finally:
        logger.setLevel(saved)
