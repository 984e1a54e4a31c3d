"""Fetching from remotes (spec 3.10) and diffs (3.6)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.store import FetchError, Kind, Store
from datakit.store._transport import ALLOW_ALL


@pytest.fixture
def upstream(tmp_path: Path, git) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    work = tmp_path / "upstream"
    work.mkdir()
    git("init", "-q", "-b", "master", cwd=work)
    (work / "README").write_text("Instructions")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    (work / "src").mkdir()
    (work / "src" / "Makefile").write_text("all: build")
    git("add", "src", cwd=work)
    git("commit", "-q", "-m", "second", cwd=work)
    return work, git("rev-parse", "HEAD", cwd=work).strip()


def check_fetched(store: Store, head: str) -> None:
    assert store.branches() == []  # fetch never changes local branches
    info = store.commit_info(head)
    assert info.message == b"second\n"
    assert store.tree(info.tree).read(("src", "Makefile")) == b"all: build"
    assert store.commit_info(info.parents[0]).message == b"first\n"
    store.fast_forward("master", head)
    assert store.head("master") == head


def test_fetch_file_url(store: Store, upstream: tuple[Path, str]) -> None:
    work, head = upstream
    assert store.fetch(f"file://{work}", "master", policy=ALLOW_ALL) == head
    check_fetched(store, head)
    # a plain path, trimmed, again
    assert store.fetch(f"  {work}\n", "master", policy=ALLOW_ALL) == head


def test_fetch_errors(store: Store, upstream: tuple[Path, str], tmp_path: Path) -> None:
    work, _ = upstream
    with pytest.raises(FetchError) as e:
        store.fetch("", "master")
    assert str(e.value) == "error: remote url is not defined"
    with pytest.raises(FetchError) as e:
        store.fetch(str(work), "nope", policy=ALLOW_ALL)
    assert str(e.value) == "error: no head to fetch"
    bad = f"file://{tmp_path}/missing"
    with pytest.raises(FetchError) as e:
        store.fetch(bad, "master", policy=ALLOW_ALL)
    assert str(e.value) == f"error: cannot fetch {bad}"


def test_fetch_into_disk_then_fsck(disk_store: Store, upstream, git) -> None:  # type: ignore[no-untyped-def]
    work, head = upstream
    assert disk_store.fetch(str(work), "master", policy=ALLOW_ALL) == head
    check_fetched(disk_store, head)
    git("fsck", "--strict", cwd=disk_store.path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def git_daemon(upstream: tuple[Path, str]) -> Iterator[str]:
    work, _ = upstream
    port = _free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            f"--base-path={work.parent}",
            f"--port={port}",
            "--listen=127.0.0.1",
            "--reuseaddr",
            str(work.parent),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if time.monotonic() > deadline:
                pytest.skip("git daemon did not start")
            time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/{work.name}"
    finally:
        proc.terminate()
        proc.wait()


def test_fetch_git_daemon(store: Store, upstream: tuple[Path, str], git_daemon: str) -> None:
    _, head = upstream
    assert store.fetch(git_daemon, "master") == head
    check_fetched(store, head)
    with pytest.raises(FetchError) as e:
        store.fetch(git_daemon, "nope")
    assert str(e.value) == "error: no head to fetch"


def test_diff_e32(store: Store) -> None:
    t = store.edit(None)
    t.put(("a",), b"a")
    t.put(("b",), b"b")
    t.put(("same", "x"), b"x")
    old = t.write_tree()
    t.write(("a",), 1, b"!")
    t.remove(("b",))
    t.put(("c",), b"c")
    assert sorted(store.diff(old, t.write_tree())) == [("*", ("a",)), ("+", ("c",)), ("-", ("b",))]
    assert store.diff(old, old) == []


def test_diff_kinds_and_dirs(store: Store) -> None:
    t = store.edit(None)
    t.put(("f",), b"x")
    t.put(("d", "1"), b"1")
    t.put(("d", "e", "2"), b"2")
    old = t.write_tree()
    t.set_kind(("f",), Kind.EXEC)
    t.remove(("d",))
    t.put(("d",), b"now a file")
    new = t.write_tree()
    assert sorted(store.diff(old, new)) == [
        ("*", ("f",)),
        ("+", ("d",)),
        ("-", ("d", "1")),
        ("-", ("d", "e", "2")),
    ]
    assert sorted(store.diff(new, old)) == [
        ("*", ("f",)),
        ("+", ("d", "1")),
        ("+", ("d", "e", "2")),
        ("-", ("d",)),
    ]
    assert sorted(store.diff(None, old)) == [
        ("+", ("d", "1")),
        ("+", ("d", "e", "2")),
        ("+", ("f",)),
    ]


def test_fetch_smart_http(store: Store, upstream: tuple[Path, str]) -> None:
    """http:// goes through the guarded HTTP client (dulwich's WSGI server)."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import make_wsgi_chain

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    work, head = upstream
    with Repo(str(work)) as repo:
        app = make_wsgi_chain(DictBackend({"/": repo}))
        with make_server("127.0.0.1", 0, app, handler_class=Quiet) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                assert store.fetch(f"http://127.0.0.1:{server.server_port}/", "master") == head
            finally:
                server.shutdown()
    check_fetched(store, head)


def test_thin_pack_is_completed(
    disk_store: Store, upstream: tuple[Path, str], git_daemon: str, git
) -> None:  # type: ignore[no-untyped-def]
    """A second fetch gets a thin pack (deltas against what we have): it is
    resolved against the store and completed before it is stored."""
    work, _ = upstream
    big = "".join(f"line {i}\n" for i in range(5000))
    (work / "big").write_text(big)
    git("add", "big", cwd=work)
    git("commit", "-q", "-m", "big", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work).strip()
    assert disk_store.fetch(git_daemon, "master") == first
    disk_store.fast_forward("master", first)  # what we have, told to the remote
    (work / "big").write_text(big + "one more line\n")
    git("commit", "-q", "-am", "more", cwd=work)
    second = git("rev-parse", "HEAD", cwd=work).strip()
    assert disk_store.fetch(git_daemon, "master") == second
    info = disk_store.commit_info(second)
    assert disk_store.tree(info.tree).read(("big",)).endswith(b"one more line\n")
    git("fsck", "--strict", "--no-dangling", cwd=disk_store.path)
    for idx in Path(disk_store.path or "", "objects", "pack").glob("*.idx"):
        git("verify-pack", str(idx), cwd=disk_store.path)


def test_schemes_of_urls() -> None:
    from datakit.store import parse_schemes
    from datakit.store._transport import scheme_of

    assert scheme_of("/srv/repo") == "file"
    assert scheme_of("./a:b") == "file"  # a slash before the colon: a path, as for git
    assert scheme_of("file:///srv/repo") == "file"
    assert scheme_of("user@host:repo") == "ssh"
    assert scheme_of("host:repo") == "ssh"
    assert scheme_of("git+ssh://host/repo") == "ssh"
    assert scheme_of("HTTPS://host/repo") == "https"
    assert parse_schemes(" git, HTTP ,ssh+git,") == {"git", "http", "ssh"}
    assert parse_schemes("") == frozenset()
    with pytest.raises(ValueError, match="ftp"):
        parse_schemes("git,ftp")


def test_second_fetch_brings_only_what_is_new(
    store: Store,
    upstream: tuple[Path, str],
    git,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A fetch offers our heads and their history as haves, so a remote
    sends only what is new (a memory store offered nothing, and every
    replica poll re-fetched the whole history)."""
    from datakit.store import _fetch

    work, head = upstream
    store.fast_forward("master", store.fetch(f"file://{work}", "master", policy=ALLOW_ALL))
    (work / "new").write_text("new\n")
    git("add", "new", cwd=work)
    git("commit", "-q", "-m", "third", cwd=work)
    received: list[int] = []
    receive = _fetch.receive

    def counted(*args: object, **kwargs: object) -> _fetch.Received:
        result = receive(*args, **kwargs)  # type: ignore[arg-type]
        received.append(len(result.index))
        return result

    monkeypatch.setattr(_fetch, "receive", counted)
    new = store.fetch(f"file://{work}", "master", policy=ALLOW_ALL)
    assert store.commit_info(new).parents == (head,)
    assert received == [3]  # the commit, its tree and the new blob


def test_a_fetch_offers_at_most_max_haves(store: Store) -> None:
    """dulwich's v2 client sends every have at once and the remote
    acknowledges each: a long history must not become a long negotiation."""
    from datakit.store import _store

    tree = store.edit(None)
    tree.put(("f",), b"x")
    commits: list[str] = []
    for i in range(_store.MAX_HAVES + 50):
        commits.append(store.make_commit(tree.write_tree(), commits[-1:], f"{i}".encode()))
    store.fast_forward("master", commits[-1])
    walker = store._graph_walker()
    offered = []
    while (sha := walker.next()) is not None:
        offered.append(sha.decode())
    assert offered[0] == commits[-1]  # our head first
    assert len(offered) == _store.MAX_HAVES
