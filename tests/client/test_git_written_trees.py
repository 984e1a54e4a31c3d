"""Trees written by git itself, read and committed on through DataKit (issue #8).

Point 3: a submodule entry (gitlink) shows as a read-only file holding its
commit id, is kept byte for byte when DataKit commits on top, and can be
removed. Point 4: names and symlink targets that are not UTF-8 are listed,
stat'ed and read as the bytes they are, on every 9p dialect, and the
connection survives. Each runs against a real ``datakit serve --git``
process and against the Git backend; ``git`` checks the result.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit import ninep
from datakit.client import Added, BackendError, Connection, File, Kind, Link, Stat, connect
from datakit.client.ninep_client import Client
from tests.gitrepo import RAW_NAME, RAW_TARGET, SUB, git, git_bytes, git_written_repo
from tests.operations.procs import datakit_process

NAME = RAW_NAME.decode("utf-8", "surrogateescape")
TARGET = RAW_TARGET.decode("utf-8", "surrogateescape")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_written_repo(tmp_path / "db.git")


@pytest.fixture(params=["9p", "git"])
def conn(request: pytest.FixtureRequest, repo: Path) -> Iterator[Connection]:
    if request.param == "git":
        with connect(str(repo), author="datakit") as c:
            yield c
        return
    with datakit_process("--git", str(repo)) as (port, _, _):
        with connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            yield c


def _ls_tree(repo: Path) -> bytes:
    return git_bytes(repo, "ls-tree", "-z", "master")


def test_git_written_tree_reads_as_its_bytes(conn: Connection) -> None:
    head = conn.branch("master").head()
    assert head is not None
    tree = head.tree()
    assert tree.read_dir("") == sorted(
        [NAME, "badlink", "sub", "plain"], key=lambda n: n.encode("utf-8", "surrogateescape")
    )
    assert tree.stat(NAME) == Stat(Kind.FILE, 6)
    assert tree.read_file(NAME) == b"hello\n"
    assert tree.stat("badlink") == Stat(Kind.LINK, len(RAW_TARGET))
    assert tree.read("badlink") == Link(TARGET)
    assert tree.stat("sub") == Stat(Kind.GITLINK, 41)
    assert tree.read("sub") == File(SUB.encode() + b"\n")
    # A watch of the path sees the same value (tree.live says G-<commit>).
    master = conn.branch("master")
    assert master.wait_for_path("sub", lambda node: node, timeout=30) == File(SUB.encode() + b"\n")
    assert master.wait_for_path(NAME, lambda node: node, timeout=30) == File(b"hello\n")


def test_commit_keeps_submodule_and_names_byte_for_byte(conn: Connection, repo: Path) -> None:
    before = _ls_tree(repo)
    with conn.branch("master").transaction() as t:
        t.create_file("new", b"x")
        t.commit("on top of git's tree")
    after = _ls_tree(repo)
    # Every entry git wrote is still there, byte for byte (mode, sha, name).
    assert set(before.split(b"\0")) <= set(after.split(b"\0"))
    assert b"160000 commit " + SUB.encode() + b"\tsub" in after
    git(repo, "fsck", "--strict")


def test_submodule_is_read_only_and_can_be_removed(conn: Connection, repo: Path) -> None:
    with conn.branch("master").transaction() as t:
        assert t.stat("sub") == Stat(Kind.GITLINK, 41)
        for attempt in (
            lambda: t.replace_file("sub", b"x"),
            lambda: t.set_executable("sub", True),
        ):
            with pytest.raises(BackendError) as info:
                attempt()
            assert info.value.errno == errno.EROFS
            assert "submodule" in str(info.value)
        assert t.read_file("sub") == SUB.encode() + b"\n"
        t.remove("sub")
        t.commit("drop the submodule")
    assert b"\tsub\0" not in _ls_tree(repo)
    git(repo, "fsck", "--strict")


def test_names_and_targets_created_through_datakit_are_stored_as_bytes(
    conn: Connection, repo: Path
) -> None:
    raw = b"new-\xe9\x80"
    name = raw.decode("utf-8", "surrogateescape")
    base = conn.branch("master").head()
    assert base is not None
    with conn.branch("master").transaction() as t:
        t.create_file(name, b"data")
        t.create_symlink("link2", TARGET)
        # diffs name such paths too (a diff file, a listing of conflicts)
        assert t.diff(base) == [Added("link2"), Added(name)]
        t.commit("bytes")
    other = conn.branch("other")
    other.fast_forward(base)
    with other.transaction() as t:
        t.create_file(name, b"other data")
        _, conflicts = t.merge(conn.branch("master").head())  # type: ignore[arg-type]
        assert conflicts == [name]
        t.abort()
    listing = _ls_tree(repo)
    assert b"\t" + raw + b"\0" in listing
    link_sha = git(repo, "rev-parse", "master:link2")
    assert git_bytes(repo, "cat-file", "blob", link_sha) == RAW_TARGET


@pytest.mark.parametrize("version", ["9P2000", "9P2000.u", "9P2000.L"])
def test_every_dialect_lists_stats_and_reads_such_names(repo: Path, version: str) -> None:
    with datakit_process("--git", str(repo)) as (port, _, _):
        client = Client.connect(f"tcp://127.0.0.1:{port}", version=version, timeout=30)
        try:
            ro = ("branch", "master", "ro")
            names = {name for name, _ in client.listdir(ro)}
            assert names == {NAME, "badlink", "sub", "plain"}
            assert client.read((*ro, NAME)) == b"hello\n"
            if version == "9P2000.L":
                fid = client.walk((*ro, "badlink"))
                reply = client.rpc(ninep.Treadlink, fid=fid)
                assert reply.target.encode("utf-8", "surrogateescape") == RAW_TARGET  # type: ignore[attr-defined]
                fid = client.walk((*ro, "sub"))
                attr = client.rpc(ninep.Tgetattr, fid=fid, request_mask=ninep.GETATTR_BASIC)
                assert attr.mode == 0o100444  # type: ignore[attr-defined]
            else:
                link = client.stat((*ro, "badlink"))
                assert link.name == "badlink"
                if version == "9P2000.u":
                    assert link.extension.encode("utf-8", "surrogateescape") == RAW_TARGET
                assert client.stat((*ro, NAME)).name == NAME
                assert client.stat((*ro, "sub")).mode == 0o444
            # The connection is still there for the next request.
            assert client.read((*ro, "plain")) == b"hello\n"
        finally:
            client.close()
