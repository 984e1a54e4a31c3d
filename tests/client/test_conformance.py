"""Scenarios C1-C20 of spec/scenarios.md, written once and run against every
backend (see conftest: 9p to an in-memory server, 9p to a ``--git`` server,
and the Git backend on a repository)."""

from __future__ import annotations

import time

import pytest

from datakit.client import (
    ABORT,
    Added,
    ConflictsRemain,
    Connection,
    DoesNotExist,
    Exec,
    File,
    InvalidHash,
    Kind,
    Link,
    Stat,
    Updated,
)
from tests.client.helpers import UNKNOWN_COMMIT, Watcher, commit_files, head_or_fail
from tests.gitdaemon import GitRemote


def test_c1_transaction_round_trip(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.create_dir("src")
        t.create_file("src/Makefile", b"all: build test")
        assert t.parents() == []
        t.commit("My commit")
    head = master.head()
    assert head is not None
    assert head.tree().stat("src/Makefile") == Stat(Kind.FILE, 15)
    assert head.message == "My commit\n"


def test_c2_watch_empty_root(conn: Connection) -> None:
    w = Watcher(conn.branch("master"), "")
    assert w.next() == ("dir", [])
    assert w.stop() is ABORT


def test_c3_watch_absent_path(conn: Connection) -> None:
    w = Watcher(conn.branch("master"), "doc")
    assert w.next() is None
    assert w.stop() is ABORT


def test_c4_watch_directory_event(conn: Connection) -> None:
    master = conn.branch("master")
    root = Watcher(master, "")
    assert root.next() == ("dir", [])
    with master.transaction() as t:
        t.make_dirs("src")
        t.create_file("src/Makefile", b"all: build")
        t.commit("Makefile")
    assert root.next() == ("dir", ["src"])
    assert root.stop() is ABORT


def test_c5_watch_file_event(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"src/Makefile": b"all: build"})
    w = Watcher(master, "src/Makefile")
    assert w.next() == File(b"all: build")
    assert w.stop() is ABORT


def test_c6_only_affected_watchers_fire(conn: Connection) -> None:
    master = conn.branch("master")
    root = Watcher(master, "")
    doc = Watcher(master, "doc")
    assert root.next() == ("dir", [])
    assert doc.next() is None
    commit_files(master, {"src/Makefile": b"all: build"})
    assert root.next() == ("dir", ["src"])
    makefile = Watcher(master, "src/Makefile")
    assert makefile.next() == File(b"all: build")
    doc.assert_pending()  # src changed, doc did not

    commit_files(master, {"doc/README": b"Instructions"})
    assert doc.next() == ("dir", ["README"])
    assert root.next() == ("dir", ["doc", "src"])
    makefile.assert_pending()
    for w in (root, doc, makefile):
        assert w.stop() is ABORT


def test_c7_watch_kind_changes(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"src/Makefile": b"all: build"})
    w = Watcher(master, "src/Makefile")
    assert w.next() == File(b"all: build")

    with master.transaction() as t:
        t.set_executable("src/Makefile", True)
        t.commit("exec")
    assert w.next() == Exec(b"all: build")

    with master.transaction() as t:
        t.remove("src/Makefile")
        t.create_symlink("src/Makefile", "my-target")
        t.commit("link")
    assert w.next() == Link("my-target")

    with master.transaction() as t:
        t.remove("src/Makefile")
        t.commit("gone")
    assert w.next() is None
    assert w.stop() is ABORT


def test_c8_make_dirs(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.make_dirs("")
        t.make_dirs("foo/bar/baz")
        assert t.stat("foo/bar/baz") == Stat(Kind.DIR, 0)
        t.make_dirs("foo/bar/baz/new")
        assert t.stat("foo/bar/baz/new") == Stat(Kind.DIR, 0)
        t.make_dirs("foo/bar/baz")
        t.commit("mkdirs")
    assert master.head() is not None


def test_c9_truncate(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.create_file("file", b"Hello", executable=True)
        t.truncate("file", 4)
        assert t.read_file("file") == b"Hell"
        t.truncate("file", 4)
        assert t.read_file("file") == b"Hell"
        t.truncate("file", 6)
        assert t.read_file("file") == b"Hell\0\0"
        t.truncate("file", 0)
        assert t.read_file("file") == b""
        assert t.stat("file") == Stat(Kind.EXEC, 0)
        t.commit("truncate")


def make_two_commits(conn: Connection) -> tuple[str, str]:
    """C10's commit1 and commit2 on master (file = 1, then 2)."""
    master = conn.branch("master")
    commit_files(master, {"file": b"1"}, "commit1")
    commit1 = head_or_fail(conn, "master")
    commit_files(master, {"file": b"2"}, "commit2")
    return commit1.id, head_or_fail(conn, "master").id


def make_dev(conn: Connection, parent: str) -> str:
    """C10's dev branch: one commit whose parent is set by hand."""
    dev = conn.branch("dev")
    with dev.transaction() as t:
        t.create_file("file", b"dev")
        t.set_parents([conn.commit(parent)])
        t.commit("commit3")
    return head_or_fail(conn, "dev").id


def test_c10_parents_bookkeeping(conn: Connection) -> None:
    assert conn.branch("master").head() is None
    commit1, commit2 = make_two_commits(conn)
    assert conn.commit(commit1).parents == []
    assert conn.commit(commit2).parents == [conn.commit(commit1)]
    commit3 = make_dev(conn, commit2)
    assert [p.id for p in conn.commit(commit3).parents] == [commit2]
    with pytest.raises(InvalidHash):
        conn.commit("hello")
    with pytest.raises(DoesNotExist):
        conn.commit(UNKNOWN_COMMIT)


def test_c11_nested_transactions(conn: Connection) -> None:
    _, commit2 = make_two_commits(conn)
    commit3 = make_dev(conn, commit2)
    master = conn.branch("master")
    with master.transaction() as t1:
        with master.transaction() as t2:
            t2.create_file("from_inner", b"inner")
            t2.commit("From inner")
        after_inner = head_or_fail(conn, "master")
        t1.create_file("from_outer", b"outer")
        parents = t1.parents()
        assert len(parents) == 1
        (p,) = parents
        assert p.id == commit2
        t1.set_parents([p, conn.commit(commit3)])
        t1.commit("From outer")
    head = head_or_fail(conn, "master")
    by_message = {c.message: c for c in head.parents}
    assert set(by_message) == {"From inner\n", "From outer\n"}
    inner, outer = by_message["From inner\n"], by_message["From outer\n"]
    assert inner == after_inner
    assert [c.id for c in inner.parents] == [commit2]
    assert {c.id for c in outer.parents} == {commit2, commit3}
    assert head.tree().read_dir("") == ["file", "from_inner", "from_outer"]


def test_c12_merge(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"file": b"from-master"})
    a = head_or_fail(conn, "master")
    pr = conn.branch("pr")
    with pytest.raises(DoesNotExist):
        pr.fast_forward(UNKNOWN_COMMIT)
    pr.fast_forward(a)
    with pr.transaction() as t:
        t.replace_file("file", t.read_file("file") + b"+pr")
        t.commit("pr")
    b = head_or_fail(conn, "pr")
    with master.transaction() as t:
        t.create_file("mine", b"pre-merge")
        (ours, theirs, base), conflicts = t.merge(b)
        assert conflicts == []
        assert ours.read_file("mine") == b"pre-merge"
        assert theirs.read_file("file") == b"from-master+pr"
        assert base.read_file("file") == b"from-master"
        t.commit("Merged")
    head = head_or_fail(conn, "master")
    assert set(head.parents) == {a, b}
    assert head.tree().read_file("file") == b"from-master+pr"
    assert head.tree().read_file("mine") == b"pre-merge"
    with pytest.raises(DoesNotExist):
        conn.commit(UNKNOWN_COMMIT)


def test_c13_diff(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"file": b"from-master", "src/Makefile": b"all: build"})
    head1 = head_or_fail(conn, "master")
    commit_files(master, {"foo": b"foo", "file": b"from-master+pr"})
    head2 = head_or_fail(conn, "master")
    assert head2.diff(head1) == [Updated("file"), Added("foo")]  # in path order
    assert head2.diff(head2) == []
    with master.transaction() as t:
        t.replace_file("file", b"from-master")
        assert t.diff(head1) == [Added("foo")]
        assert t.diff(head2) == [Updated("file")]
        t.replace_file("file", b"from-master+pr")
        assert t.diff(head2) == []
        t.abort()
    assert master.head() == head2


def test_c14_merge_of_file_kinds(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.create_file("a", b"from-master", executable=True)
        assert t.stat("a") == Stat(Kind.EXEC, 11)
        t.create_symlink("b", "from-master")
        t.create_file("c", b"from-master", executable=True)
        t.commit("kinds")
    a = head_or_fail(conn, "master")
    pr = conn.branch("pr")
    with pr.transaction() as t:
        _, conflicts = t.merge(a)
        assert conflicts == []
        assert t.stat("a") == Stat(Kind.EXEC, 11)
        t.set_executable("b", True)
        t.remove("c")
        t.create_symlink("c", "foo")
        t.commit("pr kinds")
    b = head_or_fail(conn, "pr")
    with master.transaction() as t:
        t.set_executable("c", False)
        (ours, theirs, _base), conflicts = t.merge(b)
        assert conflicts == ["c"]
        assert ours.stat("a") == Stat(Kind.EXEC, 11)
        assert ours.stat("b") == Stat(Kind.LINK, 11)
        assert theirs.stat("b") == Stat(Kind.EXEC, 11)
        assert t.stat("b") == Stat(Kind.EXEC, 11)
        assert t.stat("c") is not None and t.stat("c").kind is Kind.FILE  # type: ignore[union-attr]
        assert t.read_file("c") == b"** Conflict **\nChanged on both branches\n"
        t.replace_file("c", b"Resolved")
        t.set_executable("c", True)
        assert t.conflicts() == []
        t.commit("resolved")
    tree = head_or_fail(conn, "master").tree()
    assert tree.stat("c") == Stat(Kind.EXEC, 8)
    assert tree.stat("b") == Stat(Kind.EXEC, 11)
    assert tree.read_file("b") == b"from-master"


def test_c15_merge_into_empty_branch(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"file": b"data"})
    head = head_or_fail(conn, "master")
    new = conn.branch("new")
    with new.transaction() as t:
        _, conflicts = t.merge(head)
        assert conflicts == []
        t.commit("merge into empty")
    new_head = head_or_fail(conn, "new")
    assert new_head.tree().read_dir("") == ["file"]
    assert new_head.parents == [head]


# The base/ours/theirs table of spec/filesystem.md section 4.2.
BASE = {
    "a": b"a-from-base",
    "b": b"b-from-base",
    "c": b"c-from-base",
    "d": b"d-from-base",
    "e": b"e-from-base",
    "f": b"f-from-base",
    "dir/a": b"dir-a-from-base",
    "dir2/b": b"dir2-b-from-base",
}
OURS = {
    "a": b"a-ours",
    "b": b"b-from-base",
    "c": b"c-ours",
    "e": b"e-from-base",
    "g": b"g-same",
    "h": b"h-ours",
    "dir": b"dir-ours",
    "dir2/b": b"dir2-b-ours",
}
THEIRS = {
    "a": b"a-theirs",
    "b": b"b-theirs",
    "c": b"c-from-base",
    "d": b"d-from-base",
    "f": b"f-theirs",
    "g": b"g-same",
    "h": b"h-theirs",
    "dir/a": b"dir-a-theirs",
    "dir2": b"dir2-theirs",
}


def replace_all(conn: Connection, branch: str, files: dict[str, bytes]) -> None:
    """One transaction that first removes every top-level entry."""
    b = conn.branch(branch)
    with b.transaction() as t:
        for name in t.read_dir(""):
            t.remove(name)
        for path, data in files.items():
            t.make_dirs(path.rpartition("/")[0])
            t.create_file(path, data)
        t.commit(f"{branch} content")


def test_c16_conflicts(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, BASE, "base")
    conn.branch("theirs").fast_forward(head_or_fail(conn, "master"))
    replace_all(conn, "master", OURS)
    replace_all(conn, "theirs", THEIRS)
    theirs_head = head_or_fail(conn, "theirs")
    master_head = head_or_fail(conn, "master")
    with master.transaction() as t:
        (_, theirs, _), conflicts = t.merge(theirs_head)
        assert conflicts == ["a", "dir", "dir2", "f", "h"]
        with pytest.raises(ConflictsRemain):
            t.commit("too early")
        assert not t.closed
        assert t.read_dir("") == ["a", "b", "c", "dir", "dir2", "f", "g", "h"]
        assert t.read_file("a") == b"** Conflict **\nChanged on both branches\n"
        assert t.read_file("b") == b"b-theirs"
        assert t.read_file("c") == b"c-ours"
        assert t.read_file("f") == b"** Conflict **\noption: add/del\n"
        assert t.read_file("g") == b"g-same"
        assert t.read_file("h") == b"** Conflict **\ndefault: add/add and no common ancestor\n"
        assert t.read_file("dir") == b"** Conflict **\nFile vs dir\n"
        assert t.read_file("dir2") == b"** Conflict **\nFile vs dir\n"
        assert t.conflicts() == ["a", "dir", "dir2", "f", "h"]
        t.remove("a")
        t.remove("dir")
        t.remove("dir2")
        t.replace_file("f", theirs.read_file("f"))
        assert t.conflicts() == ["h"]
        t.remove("h")
        assert t.conflicts() == []
        t.commit("resolved")
    head = head_or_fail(conn, "master")
    assert head.message == "resolved\n"  # not what is left of "too early"
    assert set(head.parents) == {theirs_head, master_head}
    tree = head.tree()
    assert tree.read_dir("") == ["b", "c", "f", "g"]
    assert tree.read_file("f") == b"f-theirs"


def test_c17_large_write(conn: Connection) -> None:
    master = conn.branch("master")
    data = bytes(1024 * 1024)
    with master.transaction() as t:
        t.create_file("test", data)
        t.commit("large")
    tree = head_or_fail(conn, "master").tree()
    assert tree.read_file("test") == data
    assert tree.stat("test") == Stat(Kind.FILE, 1048576)


def test_c18_remove_subtree_then_abort(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.make_dirs("foo/bar/baz")
        t.create_file("foo/file1", b"1")
        t.create_file("foo/bar/file2", b"2")
        t.remove("foo/bar")
        assert t.read_dir("foo") == ["file1"]
        t.abort()
        assert t.closed
    assert master.head() is None


def test_c19_fetch(conn: Connection, git_remote: GitRemote) -> None:
    url, master_id = git_remote.url, git_remote.master
    before = conn.branches()
    commit = conn.fetch(url, "master")
    assert commit.id == master_id
    assert commit.tree().read_dir("") == ["foo", "x"]
    assert conn.branches() == before
    assert conn.commit(master_id) == commit


def test_c20_create_or_replace_file(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        assert not t.exists("README")
        t.create_or_replace_file("README", b"Data")
        assert t.exists("README")
        t.create_or_replace_file("README", b"Data2")
        t.commit("readme")
    assert head_or_fail(conn, "master").tree().read_file("README") == b"Data2"


def test_commit_tree_id_and_time(conn: Connection) -> None:
    """Both backends name a commit's root tree and time the same way: equal
    files give equal tree ids whatever the history, and the time is when the
    commit was made."""
    before = int(time.time())
    commit1, commit2 = make_two_commits(conn)
    after = int(time.time()) + 1
    c1, c2 = conn.commit(commit1), conn.commit(commit2)
    assert len(c1.tree_id) == 40 and c1.tree_id != c2.tree_id
    assert before <= c1.time <= c2.time <= after
    again = conn.branch("again")
    commit_files(again, {"file": b"2"}, "same files, other history")
    assert head_or_fail(conn, "again").tree_id == c2.tree_id
