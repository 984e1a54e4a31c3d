"""Where upstream's two backends disagreed (spec/client-api.md §6) and which
single behaviour this client gives on every backend (docs/client.md,
"Behaviour shared by both backends")."""

from __future__ import annotations

import pytest

from datakit.client import (
    AlreadyExists,
    Conflict,
    Connection,
    DoesNotExist,
    FetchFailed,
    File,
    InvalidBranchName,
    InvalidHash,
    InvalidPath,
    IsADirectory,
    Kind,
    Link,
    NotADirectory,
    NotAFile,
    NotASymlink,
    NotFastForward,
    Stat,
    TransactionClosed,
)
from tests.client.helpers import commit_files, head_or_fail
from tests.gitdaemon import GitRemote


def test_create_dir_on_existing_path_fails(conn: Connection) -> None:
    with conn.branch("master").transaction() as t:
        t.create_dir("d")
        with pytest.raises(AlreadyExists):
            t.create_dir("d")
        t.create_file("f", b"")
        with pytest.raises(AlreadyExists):
            t.create_dir("f")
        with pytest.raises(AlreadyExists):
            t.create_dir("")


def test_create_needs_an_existing_parent(conn: Connection) -> None:
    with conn.branch("master").transaction() as t:
        with pytest.raises(DoesNotExist):
            t.create_dir("a/b")
        with pytest.raises(DoesNotExist):
            t.create_file("a/b", b"x")
        with pytest.raises(DoesNotExist):
            t.create_symlink("a/b", "x")
        t.create_file("f", b"x")
        with pytest.raises(NotADirectory):
            t.create_file("f/b", b"x")
        with pytest.raises(NotADirectory):
            t.create_dir("f/b")
        with pytest.raises(NotADirectory):
            t.make_dirs("f/b")
        assert t.read_dir("") == ["f"]


def test_remove_of_missing_path_fails(conn: Connection) -> None:
    with conn.branch("master").transaction() as t:
        with pytest.raises(DoesNotExist):
            t.remove("nothing")
        with pytest.raises(DoesNotExist):
            t.replace_file("nothing", b"")
        with pytest.raises(DoesNotExist):
            t.set_executable("nothing", True)
        with pytest.raises(DoesNotExist):
            t.truncate("nothing", 0)


def test_directories_are_not_files(conn: Connection) -> None:
    with conn.branch("master").transaction() as t:
        t.create_dir("d")
        with pytest.raises(IsADirectory):
            t.create_file("d", b"x")
        with pytest.raises(IsADirectory):
            t.replace_file("d", b"x")
        with pytest.raises(IsADirectory):
            t.set_executable("d", True)
        with pytest.raises(IsADirectory):
            t.truncate("d", 3)
        t.truncate("d", 0)  # accepted and ignored, as on the server
        with pytest.raises(NotAFile):
            t.read_file("d")
        with pytest.raises(NotASymlink):
            t.read_link("d")


def test_exists_file_is_true_for_any_non_directory(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.create_file("plain", b"p")
        t.create_file("exec", b"e", executable=True)
        t.create_symlink("link", "plain")
        t.create_dir("dir")
        t.create_file("dir/x", b"")
        for reader in (t,):
            assert reader.exists_file("plain")
            assert reader.exists_file("exec")
            assert reader.exists_file("link")
            assert not reader.exists_file("dir")
            assert reader.exists_dir("dir")
            assert not reader.exists_file("missing")
        t.commit("kinds")
    tree = head_or_fail(conn, "master").tree()
    assert [tree.exists_file(p) for p in ("plain", "exec", "link", "dir", "missing")] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_symlinks_read_as_links_everywhere(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t:
        t.create_symlink("link", "some/target")
        assert t.read("link") == Link("some/target")
        assert t.read_link("link") == "some/target"
        assert t.stat("link") == Stat(Kind.LINK, 11)
        with pytest.raises(NotAFile):
            t.read_file("link")
        t.create_file("exec", b"#!", executable=True)
        assert t.read("exec") == File(b"#!")  # executables read as File
        t.commit("link")
    tree = head_or_fail(conn, "master").tree()
    assert tree.read("link") == Link("some/target")
    assert tree.read_link("link") == "some/target"
    assert tree.stat("link") == Stat(Kind.LINK, 11)
    with pytest.raises(NotASymlink):
        tree.read_link("exec")


def test_reads_below_a_file_find_nothing(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"f": b"x"})
    tree = head_or_fail(conn, "master").tree()
    with master.transaction() as t:
        for reader in (t, tree):
            assert reader.stat("f/x") is None
            assert not reader.exists("f/x")
            with pytest.raises(DoesNotExist):
                reader.read("f/x")
            with pytest.raises(DoesNotExist):
                reader.read("missing")
            with pytest.raises(NotADirectory):
                reader.read_dir("f")


def test_conflicts_are_in_path_order(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"a/z": b"base", "z/a": b"base", "b": b"base"})
    conn.branch("other").fast_forward(head_or_fail(conn, "master"))
    commit_files(master, {"a/z": b"ours", "z/a": b"ours", "b": b"ours"})
    commit_files(conn.branch("other"), {"a/z": b"theirs", "z/a": b"theirs", "b": b"theirs"})
    with master.transaction() as t:
        _, conflicts = t.merge(head_or_fail(conn, "other"))
        # The server sorts by last component first (z/a before a/z).
        assert conflicts == ["a/z", "b", "z/a"]
        assert t.conflicts() == ["a/z", "b", "z/a"]
        t.abort()


def test_closed_transactions_raise(conn: Connection) -> None:
    master = conn.branch("master")
    t = master.transaction()
    t.create_file("f", b"x")
    t.commit("one")
    assert t.closed
    for op in (
        lambda: t.create_file("g", b""),
        lambda: t.read("f"),
        lambda: t.stat("f"),
        lambda: t.make_dirs("a/b"),
        lambda: t.commit("again"),
        lambda: t.parents(),
        lambda: t.conflicts(),
    ):
        with pytest.raises(TransactionClosed):
            op()
    t.abort()  # idempotent, never fails
    t2 = master.transaction()
    t2.abort()
    t2.abort()
    with pytest.raises(TransactionClosed):
        t2.remove("f")


def test_automatic_merge_commit_says_merge(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"base": b"b"})
    with master.transaction() as outer:
        commit_files(master, {"inner": b"i"}, "inner")
        outer.create_file("outer", b"o")
        outer.commit("outer")
    head = head_or_fail(conn, "master")
    assert head.message == "Merge\n"
    assert {p.message for p in head.parents} == {"inner\n", "outer\n"}
    assert head.tree().read_dir("") == ["base", "inner", "outer"]


def test_commit_time_conflict_keeps_the_transaction_open(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"f": b"base"})
    t = master.transaction()
    commit_files(master, {"f": b"inner"}, "inner")
    t.replace_file("f", b"outer")
    with pytest.raises(Conflict) as info:
        t.commit("outer")
    assert str(info.value).startswith("Merge conflict:")
    assert not t.closed
    # Resolve by merging the new head into the transaction.
    _, conflicts = t.merge(head_or_fail(conn, "master"))
    assert conflicts == ["f"]
    t.replace_file("f", b"resolved")
    t.commit("outer, resolved")
    assert head_or_fail(conn, "master").tree().read_file("f") == b"resolved"


def test_fast_forward_rules(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"f": b"1"})
    one = head_or_fail(conn, "master")
    commit_files(master, {"f": b"2"})
    two = head_or_fail(conn, "master")
    master.fast_forward(two)  # already there: success on both backends
    assert master.head() == two
    with pytest.raises(NotFastForward):
        master.fast_forward(one)
    other = conn.branch("other")
    other.fast_forward(one.id)  # ids are accepted as well as commits
    other.fast_forward(two)
    assert other.head() == two
    with pytest.raises(InvalidHash):
        other.fast_forward("zzz")


def test_tree_by_hash(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"README": b"Instructions"})
    # The tree holding only README = Instructions (spec filesystem.md §1.1).
    sha = "a3e8adf6d194bfbdec2ca73aebe0990edee2ddbf"
    for name in (sha, sha.upper(), f"D-{sha}"):
        assert conn.tree(name).read_file("README") == b"Instructions"
    empty = conn.tree("4b825dc642cb6eb9a060e54bf8d69288fbee4904")
    assert empty.read_dir("") == []
    with pytest.raises(DoesNotExist):
        conn.tree("a3827c5d1a2ba8c6a40eded5598dba8d3835fb35")
    with pytest.raises(InvalidHash):
        conn.tree("hello")
    blob = "d81e367f87ee314bcd3e449b1c6641efda5bc269"  # a blob, not a tree
    commit_files(master, {"x": b"all: build"})
    with pytest.raises(DoesNotExist):
        conn.tree(blob)


def test_branch_names_and_listing(conn: Connection) -> None:
    assert conn.branches() == []
    conn.branch("master")
    assert conn.branches() == ["master"]  # listed before its first commit
    commit_files(conn.branch("dev"), {"f": b""})
    assert conn.branches() == ["dev", "master"]
    for bad in ("a/b", "foo bar", "", "..", "-x", "a..b"):
        with pytest.raises(InvalidBranchName):
            conn.branch(bad)
    conn.remove_branch("dev")
    conn.remove_branch("never-existed")
    assert conn.branches() == ["master"]
    assert conn.branch("dev").head() is None


def test_paths_are_validated(conn: Connection) -> None:
    with conn.branch("master").transaction() as t:
        for bad in ("a//b", "/a", "a/", ".", "a/../b", ("a/b",), ("",)):
            with pytest.raises(InvalidPath):
                t.create_file(bad, b"")
        t.make_dirs(("a", "b"))
        t.create_file(("a", "b", "c"), b"tuple paths")
        assert t.read_file("a/b/c") == b"tuple paths"
        assert t.read_dir(()) == ["a"]


def test_remove_root_empties_the_tree(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"a": b"", "b/c": b""})
    with master.transaction() as t:
        t.remove("")
        assert t.read_dir("") == []
        t.create_file("new", b"")
        t.commit("replace all")
    assert head_or_fail(conn, "master").tree().read_dir("") == ["new"]


def test_message_round_trip(conn: Connection) -> None:
    master = conn.branch("master")
    for message, expected in (("one line", "one line\n"), ("", "(no commit message)\n")):
        with master.transaction() as t:
            t.commit(message)
        assert head_or_fail(conn, "master").message == expected


def test_fetch_failures(conn: Connection, git_remote: GitRemote) -> None:
    url = git_remote.url
    with pytest.raises(FetchFailed, match="no head to fetch"):
        conn.fetch(url, "no-such-branch")
    with pytest.raises(FetchFailed, match="cannot fetch"):
        conn.fetch("git://127.0.0.1:1/", "master")
    assert conn.branches() == []
