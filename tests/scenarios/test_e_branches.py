"""Section E of spec/scenarios.md, E1-E10: branches and heads."""

from __future__ import annotations

from datakit import ninep
from datakit.client.ninep_client import Client
from tests.scenarios.helpers import (
    Stream,
    assert_silent,
    cancel,
    commit_files,
    connect,
    echo,
    error_of,
    head,
    parents_of,
)


def test_E01_head_format(client: Client) -> None:
    h = commit_files(client, {"f": b"x"})
    data = client.read("branch/master/head")
    assert len(data) == 41
    assert data == f"{h}\n".encode()
    assert all(ch in "0123456789abcdef" for ch in h)
    assert client.stat("branch/master/head").length == 41


def test_E02_head_live(client: Client) -> None:
    h = commit_files(client, {"f": b"1"})
    live = Stream(client, "branch/master/head.live")
    assert live.line() == f"{h}\n".encode()
    commit_files(client, {"f": b"2"})
    h3 = commit_files(client, {"f": b"3"})
    assert live.line() == f"{h3}\n".encode()  # only the latest head
    client.remove("branch/master")
    assert live.line() == b"\n"


def test_E03_reflog(client: Client) -> None:
    commit_files(client, {"f": b"0"})
    log = Stream(client, "branch/master/reflog")
    assert log.line() == b"\n"  # not the current head
    h1 = commit_files(client, {"f": b"1"})
    assert log.line() == f"{h1}\n".encode()
    h2 = commit_files(client, {"f": b"2"})
    assert log.line() == f"{h2}\n".encode()
    client.remove("branch/master")
    assert log.line() == b"\n"


def test_E04_stream_cursor_rules(client: Client) -> None:
    h = commit_files(client, {"f": b"x"})
    live = Stream(client, "branch/master/head.live")
    assert error_of(client.read_fid, live.fid, 5, 100) == "Attempt to seek in stream"
    assert live.read() == f"{h}\n".encode()
    assert error_of(client.read_fid, live.fid, 0, 100) == "Attempt to seek in stream"
    assert live.read() == b""  # the flush reply, at once
    tag = live.start_read()
    assert_silent(client)  # the one after blocks
    cancel(client, tag)
    wfid = client.open("branch/master/head.live", ninep.OWRITE)
    assert error_of(client.write_fid, wfid, b"x") == "Read-only file"
    assert head(client) == h


def test_E05_fast_forward_rules(client: Client) -> None:
    h1 = commit_files(client, {"f": b"1"})
    h2 = commit_files(client, {"f": b"2"})
    client.mkdir("branch/diverged")
    echo(client, "branch/diverged/fast-forward", h1.encode())
    diverged = commit_files(client, {"g": b"other"}, branch="diverged")
    client.mkdir("branch/next")
    echo(client, "branch/next/fast-forward", h2.encode())
    h3 = commit_files(client, {"f": b"3"}, branch="next")
    ff = "branch/master/fast-forward"

    echo(client, ff, h2.encode())
    assert head(client) == h2
    assert error_of(echo, client, ff, h1.encode()) == "not-fast-forward"
    assert error_of(echo, client, ff, diverged.encode()) == "not-fast-forward"
    assert head(client) == h2
    echo(client, ff, f"{h3}\n".encode())
    assert head(client) == h3
    assert client.read(ff) == b""  # success leaves no output
    assert error_of(echo, client, ff, b"zzz").startswith('invalid-hash "zzz"')
    assert error_of(echo, client, ff, b"0" * 40) == "No such file or directory"
    assert head(client) == h3


def test_E06_forking_a_branch(client: Client) -> None:
    h = commit_files(client, {"f": b"x"})
    client.mkdir("branch/new")
    # cp branch/master/head branch/new/fast-forward
    echo(client, "branch/new/fast-forward", client.read("branch/master/head"))
    assert head(client, "new") == h
    assert client.read("branch/new/ro/f") == b"x"


def test_E07_deleting_a_branch(client: Client, server: str) -> None:
    commit_files(client, {"f": b"x"}, branch="foo")
    commit_files(client, {"f": b"x"})
    client.remove("branch/foo")
    assert client.ls("branch") == ["master"]
    with connect(server) as other:
        assert other.ls("branch") == ["master"]
        assert error_of(other.walk, "branch/foo") == "No such file or directory"
    client.mkdir("branch/nothere")
    client.remove("branch/nothere")  # never existed in the store: still fine
    assert client.ls("branch") == ["master"]


def test_E08_branch_mkdir_is_lazy_and_private(client: Client, server: str) -> None:
    with connect(server) as b:
        client.mkdir("branch/x")
        assert client.ls("branch") == ["x"]
        assert b.ls("branch") == []
        commit_files(client, {"f": b"x"}, branch="x")
        assert b.ls("branch") == ["x"]
        h = commit_files(b, {"f": b"m"})
        b.mkdir("branch/master")  # already exists: fine
        assert head(b) == h


def test_E09_renaming_onto_existing_branch(client: Client) -> None:
    a = commit_files(client, {"f": b"a"}, branch="a")
    b = commit_files(client, {"f": b"b"}, branch="b")
    assert error_of(client.rename, "branch/a", "b") == "Is a directory"
    assert head(client, "a") == a
    assert head(client, "b") == b
    assert parents_of(client, a) == set()


def test_E10_branch_names(client: Client) -> None:
    client.mkdir("branch/foo.bar-1_x")
    assert client.ls("branch") == ["foo.bar-1_x"]
    assert "is not a valid branch name" in error_of(client.mkdir, "branch/foo bar")
    assert client.ls("branch") == ["foo.bar-1_x"]  # nothing cached
    assert error_of(client.walk, "branch/foo bar") == "No such file or directory"
