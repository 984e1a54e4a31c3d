"""Section E of spec/scenarios.md, E33-E40: read-only areas and special files."""

from __future__ import annotations

import json

from datakit import ninep
from datakit.client.ninep_client import Client
from tests.scenarios.helpers import (
    EMPTY_TREE,
    GitRemote,
    Stream,
    assert_silent,
    cancel,
    commit,
    commit_files,
    connect,
    echo,
    error_of,
    free_port,
    head,
    mode_of,
    symlink,
    tx,
)


def test_E33_read_only_views(client: Client) -> None:
    commit_files(client, {"f": b"data"})
    fid = client.open("branch/master/ro/f", ninep.OWRITE)
    assert error_of(client.write_fid, fid, b"x") == "Read-only file"
    client.clunk(fid)
    assert error_of(client.mkdir, "branch/master/ro/x") == "Directory is read-only"
    assert error_of(client.create, "branch/master/ro/x") == "Directory is read-only"
    assert error_of(client.remove, "branch/master/ro/f") == "Read-only file"
    assert error_of(client.truncate, "branch/master/ro/f", 0) == "Read-only file"
    assert error_of(client.remove, "branch/master/head") == "Read-only file"
    fid = client.open("branch/master/head", ninep.ORDWR)  # modes are ignored
    assert error_of(client.write_fid, fid, b"x") == "Read-only file"
    client.clunk(fid)
    assert client.read("branch/master/ro/f") == b"data"


def test_E34_command_file_edge_cases(client: Client) -> None:
    t = tx(client)
    assert error_of(client.truncate, f"{t}/ctl", 5) == "Can't extend command file"
    client.truncate(f"{t}/ctl", 0)  # what `echo x >` does first: accepted
    assert error_of(client.remove, f"{t}/ctl") == "Operation not permitted"
    assert client.read(f"{t}/ctl") == b""
    assert client.read(f"{t}/merge") == b""
    assert client.read("branch/master/fast-forward") == b""
    assert client.ls(t) == ["ctl", "diff", "merge", "msg", "origin", "parents", "rw"]


def test_E35_snapshots(client: Client) -> None:
    h1 = commit_files(client, {"f": b"1"})
    h = commit_files(client, {"f": b"2"}, msg=b"second")
    assert client.ls("snapshots") == []
    assert client.ls(f"snapshots/{h}") == ["ro", "hash", "msg", "parents", "diff"]
    assert client.read(f"snapshots/{h}/hash") == h.encode()
    assert client.read(f"snapshots/{h}/msg") == b"second\n"
    assert client.read(f"snapshots/{h}/parents") == f"{h1}\n".encode()
    assert client.read(f"snapshots/{h}/ro/f") == b"2"
    assert client.read(f"snapshots/{h1}/ro/f") == b"1"
    assert error_of(client.walk, "snapshots/xyz").startswith('invalid-hash "xyz": ')
    assert error_of(client.walk, f"snapshots/{'0' * 40}") == "No such file or directory"


def test_E36_trees(client: Client) -> None:
    t = tx(client)
    client.create(f"{t}/rw/f", b"regular")
    client.create(f"{t}/rw/X", b"exec", perm=0o755)
    symlink(client, f"{t}/rw/l", "the-target")
    client.mkdir(f"{t}/rw/d")
    client.create(f"{t}/rw/d/one", b"1")
    client.create(f"{t}/rw/d/two", b"2")
    commit(client, t)

    def line(name: str) -> str:
        return Stream(client, f"branch/master/watch/{name}.node/tree.live").line().decode().strip()

    f, x, link, d = line("f"), line("X"), line("l"), line("d")
    assert (f[:2], x[:2], link[:2], d[:2]) == ("F-", "X-", "L-", "D-")
    assert client.read(f"trees/{f}") == b"regular"
    assert mode_of(client, f"trees/{f}") == 0o664
    assert client.read(f"trees/{x}") == b"exec"
    assert mode_of(client, f"trees/{x}") == 0o775
    st = client.stat(f"trees/{link}")
    assert st.mode == ninep.DMSYMLINK | 0o775
    assert st.extension == "the-target"
    assert client.ls(f"trees/{d}") == ["one", "two"]
    assert client.read(f"trees/{d}/two") == b"2"
    assert client.stat(f"trees/{d}").name == d  # not upstream's `ro`
    assert client.ls(f"trees/D-{EMPTY_TREE}") == []
    assert client.ls("trees") == []
    for bad in (f"Q-{f[2:]}", "F-xyz", f"D-{f[2:]}", f"F-{d[2:]}", f"F-{'0' * 40}", "nonsense"):
        assert error_of(client.walk, f"trees/{bad}") == "No such file or directory", bad


def test_E37_commits(client: Client) -> None:
    h = commit_files(client, {"f": b"1"}, msg=b"hello")
    doc = json.loads(client.read(f"commits/{h}"))
    assert doc["hash"] == h
    assert doc["value"]["parents"] == []
    assert doc["value"]["info"]["message"] == "hello"
    assert client.stat(f"commits/{h}").name == h
    assert error_of(client.walk, f"commits/{'0' * 40}") == "No such file or directory"
    assert error_of(client.walk, "commits/xyz").startswith('invalid-hash "xyz"')
    assert client.ls("commits") == []


def test_E38_watch_directory(client: Client, server: str) -> None:
    commit_files(client, {"a": b"1", "b": b"1", "sub/c": b"1"})
    assert client.ls("branch/master/watch") == ["tree.live", "a.node", "b.node", "sub.node"]
    assert client.ls("branch/master/watch/sub.node") == ["tree.live", "c.node"]
    nothere = Stream(client, "branch/master/watch/nothere.node/tree.live")
    assert nothere.line() == b"\n"
    assert error_of(client.walk, "branch/master/watch/foo") == "No such file or directory"
    b = Stream(client, "branch/master/watch/b.node/tree.live")
    assert b.line().startswith(b"F-")
    tag = b.start_read()
    with connect(server) as writer:
        commit_files(writer, {"a": b"2"})  # changes only `a`
        assert head(writer)
        assert_silent(client)
    cancel(client, tag)


def test_E39_remotes(client: Client, server: str, git_remote: GitRemote) -> None:
    client.mkdir("remotes/r")
    assert error_of(client.mkdir, "remotes/r") == "Already exists"
    assert error_of(echo, client, "remotes/r/fetch", b"master\n") == (
        "error: remote url is not defined"
    )
    unreachable = f"git://127.0.0.1:{free_port()}/"
    echo(client, "remotes/r/url", f"{unreachable}\n".encode())  # trimmed (recommended)
    assert error_of(echo, client, "remotes/r/fetch", b"master\n") == (
        f"error: cannot fetch {unreachable}"
    )
    echo(client, "remotes/r/url", git_remote.url.encode())
    assert error_of(echo, client, "remotes/r/fetch", b"no-such-branch\n") == (
        "error: no head to fetch"
    )
    with connect(server) as other:
        assert other.ls("remotes") == []
        assert error_of(other.walk, "remotes/r") == "No such file or directory"
    fid = client.open("remotes/r/head")
    tag = client.next_tag()
    client.send(ninep.Tread(tag=tag, fid=fid, offset=0, count=100))
    assert_silent(client)  # blocks until a fetch
    cancel(client, tag)


def test_E40_debug(client: Client) -> None:
    sources = client.ls("debug/src")
    assert sources
    for source in sources:
        doc = client.read(f"debug/src/{source}/doc")
        assert doc.endswith(b"\n") and len(doc) > 1
        assert client.ls(f"debug/src/{source}") == ["doc", "level"]
    level = f"debug/src/{sources[0]}/level"
    before = client.read(level)
    assert error_of(client.write, level, b"loud\n", truncate=False)
    assert error_of(client.remove, level) == "Operation not permitted"
    assert client.read(level) == before
