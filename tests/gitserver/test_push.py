"""`git push` to `datakit serve --listen-git --git-push[=ff|force]`: the
real `git` against real server processes (memory and `--git` stores), and
raw git:// connections for what `git` never does (a push racing a commit
between the advertisement and the update, an endless pack)."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import threading
import time
import tracemalloc
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from datakit.client import AGAIN, Branch, connect
from datakit.client.ninep_client import Client
from datakit.fs.writes import StoreWriter
from datakit.gitserver import GitContext, GitServer
from datakit.store import Store
from tests.gitrepo import GIT_ENV, git, git_bytes, literal, literal_tree
from tests.operations.procs import datakit_ports
from tests.scenarios.helpers import Stream

IDENT = b"t <t@example.com> 1483228800 +0000"
ZERO = "0" * 40


class Served:
    """A running `datakit serve` with a git endpoint, and a 9p client."""

    def __init__(self, ports: dict[str, int], store: Path | None) -> None:
        self.url = f"git://127.0.0.1:{ports['git']}/"
        self.port = ports["git"]
        self.metrics_url = f"http://127.0.0.1:{ports['metrics']}/metrics"
        self.store = store  # the --git repository, if any
        self.address = f"tcp://127.0.0.1:{ports['9p']}"
        self.conn = connect(self.address, timeout=30)

    def commit(self, branch: str, files: dict[str, bytes], message: str) -> str:
        b: Branch = self.conn.branch(branch)
        with b.transaction() as t:
            for path, data in files.items():
                t.create_or_replace_file(path, data)
            t.commit(message)
        return self.head(branch) or ""

    def head(self, branch: str) -> str | None:
        head = self.conn.branch(branch).head()
        return None if head is None else head.id

    def metric(self, name: str, **labels: str) -> float:
        text = urllib.request.urlopen(self.metrics_url, timeout=10).read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        found = re.search(rf"^{re.escape(name)}{{{re.escape(want)}}} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def wait_metric(self, value: float, name: str, **labels: str) -> float:
        """The metric once it is ``value`` (or after a while): a request is
        counted when its thread ends, which may be after the client is done."""
        deadline = time.monotonic() + 10
        while (found := self.metric(name, **labels)) != value and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def fsck(self) -> None:
        if self.store is not None:
            git(self.store, "fsck", "--strict", "--no-dangling")


@contextmanager
def serving(tmp_path: Path, kind: str, *flags: str) -> Iterator[Served]:
    args = ["--listen-git", "tcp://127.0.0.1:0", *flags]
    store = None
    if kind == "git":
        store = tmp_path / "store.git"
        args += ["--git", str(store)]
    with datakit_ports(*args) as (ports, _proc):
        served = Served(ports, store)
        try:
            yield served
        finally:
            served.conn.close()


@pytest.fixture(params=["memory", "git"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def push(repo: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`git push URL ARGS` in `repo`, whatever its outcome."""
    return subprocess.run(
        ["git", "push", "--porcelain", url, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=GIT_ENV,
        timeout=120,
    )


def clone(served: Served, path: Path) -> Path:
    git(None, "clone", "-q", served.url, str(path))
    return path


def local_commit(repo: Path, name: str, data: str, message: str) -> str:
    (repo / name).write_text(data)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


# -- without --git-push ------------------------------------------------------


def test_push_refused_without_the_flag(tmp_path: Path, kind: str) -> None:
    with serving(tmp_path, kind) as served:
        first = served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        new = local_commit(work, "f", "2\n", "second")
        done = push(work, served.url, "master")
        assert done.returncode != 0
        assert "pushing is not enabled on this DataKit server" in done.stderr
        assert "--git-push" in done.stderr
        done = push(work, served.url, "master:refs/heads/other")
        assert done.returncode != 0
        assert served.head("master") == first
        assert served.conn.branches() == ["master"]
        if served.store is not None:
            assert subprocess.run(["git", "cat-file", "-e", new], cwd=served.store).returncode
        requests = "datakit_git_requests_total"
        assert served.wait_metric(2, requests, service="push", outcome="refused") == 2


# -- fast-forwards, new branches, watchers -----------------------------------


def test_fast_forward_push_moves_the_branch_and_wakes_watchers(tmp_path: Path, kind: str) -> None:
    with serving(tmp_path, kind, "--git-push") as served:
        served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        local_commit(work, "f", "2\n", "second")
        new = local_commit(work, "g", "g\n", "third")

        # A head.live reader and a path watch, both waiting before the push.
        waiting = threading.Event()
        seen: dict[str, object] = {}

        def until_head(head: object) -> object:
            waiting.set()
            return head.id if head is not None and head.id == new else AGAIN  # type: ignore[attr-defined]

        def watch_head() -> None:
            with connect(served.address, timeout=30) as conn:
                seen["head"] = conn.branch("master").wait_for_head(until_head, timeout=60)

        watcher = threading.Thread(target=watch_head)
        watcher.start()
        assert waiting.wait(30)
        done = push(work, served.url, "master")
        assert done.returncode == 0, done.stderr
        watcher.join(60)
        assert seen.get("head") == new

        assert served.head("master") == new
        tree = served.conn.branch("master").head().tree()  # type: ignore[union-attr]
        assert tree.read_file("f") == b"2\n"
        assert tree.read_file("g") == b"g\n"
        served.fsck()
        requests = "datakit_git_requests_total"
        assert served.wait_metric(1, requests, service="push", outcome="ok") == 1


def test_the_reflog_sees_a_push(tmp_path: Path, kind: str) -> None:
    with serving(tmp_path, kind, "--git-push") as served:
        served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        new = local_commit(work, "f", "2\n", "second")
        client = Client.connect(served.address, timeout=60)
        try:
            log = Stream(client, "branch/master/reflog")
            assert log.line() == b"\n"  # opened before the push
            assert push(work, served.url, "master").returncode == 0
            assert log.line() == f"{new}\n".encode()
        finally:
            client.close()


def test_a_new_branch_and_many_commits(tmp_path: Path, kind: str) -> None:
    with serving(tmp_path, kind, "--git-push") as served:
        base = served.commit("master", {"f": b"base\n" * 1000}, "base")
        work = clone(served, tmp_path / "work")
        git(work, "checkout", "-q", "-b", "topic")
        for i in range(30):
            # Small edits of a big file: git sends deltas against what the
            # server has (a thin pack), which must be completed there.
            local_commit(work, "f", "base\n" * 1000 + f"{i}\n", f"c{i}")
        head = git(work, "rev-parse", "HEAD")
        done = push(work, served.url, "topic")
        assert done.returncode == 0, done.stderr
        assert served.conn.branches() == ["master", "topic"]
        assert served.head("topic") == head
        assert served.head("master") == base
        commit = served.conn.commit(head)
        assert commit.tree().read_file("f").endswith(b"29\n")
        served.fsck()
        # And back: a clone gets exactly what was pushed.
        again = tmp_path / "again"
        git(None, "clone", "-q", "-b", "topic", served.url, str(again))
        assert git(again, "rev-parse", "HEAD") == head
        git(again, "fsck", "--strict", "--no-dangling")


def test_a_push_to_an_empty_database(tmp_path: Path, kind: str) -> None:
    with serving(tmp_path, kind, "--git-push") as served:
        work = tmp_path / "work"
        git(None, "init", "-q", "-b", "master", str(work))
        head = local_commit(work, "f", "x\n", "first")
        done = push(work, served.url, "master")
        assert done.returncode == 0, done.stderr
        assert served.head("master") == head
        assert served.conn.branch("master").head().tree().read_file("f") == b"x\n"  # type: ignore[union-attr]
        served.fsck()


# -- races -------------------------------------------------------------------


def test_a_push_racing_a_commit_keeps_both(tmp_path: Path, kind: str) -> None:
    with serving(tmp_path, kind, "--git-push") as served:
        served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        ours = local_commit(work, "g", "pushed\n", "pushed")
        theirs = served.commit("master", {"f": b"9p\n"}, "committed through 9p")
        done = push(work, served.url, "master")
        assert done.returncode != 0
        assert "rejected" in done.stdout + done.stderr
        assert served.head("master") == theirs
        # The usual fix: fetch, rebase, push again: both are kept.
        git(work, "pull", "-q", "--rebase", "origin", "master")
        done = push(work, served.url, "master")
        assert done.returncode == 0, done.stderr
        head = served.conn.branch("master").head()
        assert head is not None and head.id != ours
        assert [p.id for p in head.parents] == [theirs]
        assert head.tree().read_file("f") == b"9p\n"
        assert head.tree().read_file("g") == b"pushed\n"
        served.fsck()


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def read_pkts(sock: socket.socket) -> list[bytes]:
    """pkt-lines up to a flush (or the end of the connection)."""
    lines: list[bytes] = []
    buf = sock.makefile("rb")
    while True:
        size = buf.read(4)
        if len(size) < 4 or size == b"0000":
            return lines
        lines.append(buf.read(int(size, 16) - 4))


def open_push(port: int) -> tuple[socket.socket, dict[str, str]]:
    """A raw receive-pack connection and the branches it advertised."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(pkt(b"git-receive-pack /\0host=127.0.0.1\0"))
    refs: dict[str, str] = {}
    for line in read_pkts(sock):
        sha, _, ref = line.split(b"\0")[0].rstrip(b"\n").partition(b" ")
        refs[ref.decode()] = sha.decode()
    return sock, refs


def test_a_commit_between_advertisement_and_update_wins(tmp_path: Path, kind: str) -> None:
    """The compare-and-swap: the push names the head it saw; a commit that
    landed since is kept and the push is refused (stale), not merged over."""
    with serving(tmp_path, kind, "--git-push=force") as served:
        first = served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        ours = local_commit(work, "g", "pushed\n", "pushed")
        pack = git_bytes(
            work, "pack-objects", "--stdout", "--revs", input=f"{ours}\n^{first}\n".encode()
        )
        sock, refs = open_push(served.port)
        with sock:
            assert refs == {"refs/heads/master": first}
            theirs = served.commit("master", {"f": b"9p\n"}, "committed meanwhile")
            update = f"{first} {ours} refs/heads/master\0report-status\n".encode()
            sock.sendall(pkt(update) + b"0000" + pack)
            status = read_pkts(sock)
        assert status[0] == b"unpack ok\n"
        assert status[1].startswith(b"ng refs/heads/master stale info")
        assert served.head("master") == theirs
        served.fsck()


# -- forced pushes and deletions ---------------------------------------------


@pytest.mark.parametrize("mode", ["ff", "force"])
def test_forced_push_and_delete_only_with_force(tmp_path: Path, kind: str, mode: str) -> None:
    with serving(tmp_path, kind, f"--git-push={mode}") as served:
        served.commit("master", {"f": b"1\n"}, "first")
        old = served.commit("master", {"f": b"2\n"}, "second")
        served.commit("topic", {"t": b"t\n"}, "topic")
        work = clone(served, tmp_path / "work")
        git(work, "reset", "-q", "--hard", "HEAD~1")
        rewritten = local_commit(work, "f", "rewritten\n", "rewritten")
        done = push(work, served.url, "--force", "master")
        deleted = push(work, served.url, "--delete", "topic")
        if mode == "ff":
            assert done.returncode != 0
            assert "non-fast-forward (the server allows only fast-forwards" in done.stdout
            assert "--git-push=force allows forced pushes" in done.stdout
            assert served.head("master") == old
            assert deleted.returncode != 0
            assert served.conn.branches() == ["master", "topic"]
            # The forced push is refused by the server; the delete by git
            # itself (delete-refs is not offered), which then sends nothing.
            requests = "datakit_git_requests_total"
            assert served.wait_metric(1, requests, service="push", outcome="refused") == 1
        else:
            assert done.returncode == 0, done.stderr
            assert served.head("master") == rewritten
            assert deleted.returncode == 0, deleted.stderr
            assert served.head("topic") is None
            with connect(served.address) as fresh:  # branch() above made it this connection's
                assert fresh.branches() == ["master"]
        served.fsck()


def test_only_branches_can_be_pushed(tmp_path: Path) -> None:
    with serving(tmp_path, "memory", "--git-push") as served:
        first = served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        local_commit(work, "f", "2\n", "second")
        git(work, "tag", "v1")
        done = push(work, served.url, "v1", "HEAD:refs/notes/x", "master")
        assert done.returncode != 0
        assert "refs/tags/v1" in done.stdout and "only branches can be pushed" in done.stdout
        assert "refs/notes/x" in done.stdout
        # The branch in the same push went through.
        assert served.head("master") == git(work, "rev-parse", "HEAD") != first
        tree = git(work, "rev-parse", "HEAD^{tree}")
        done = push(work, served.url, f"{tree}:refs/heads/t")
        assert done.returncode != 0
        assert f"{tree} is a tree, not a commit" in done.stdout
        assert served.head("t") is None


# -- bad objects -------------------------------------------------------------


def _bad_commits(repo: Path, parent: str) -> dict[str, tuple[str, str]]:
    """name -> (a commit git's fsck refuses, a fragment of the reason)."""
    blob = literal(repo, "blob", b"data\n")
    good_tree = literal_tree(repo, [(b"100644", b"f", blob)])
    modules = literal(repo, "blob", b'[submodule "m"]\n\tpath = m\n\turl = -upload-pack=x\n')

    def commit(tree: str, author: bytes = b"author " + IDENT) -> str:
        body = (
            f"tree {tree}\nparent {parent}\n".encode()
            + author
            + b"\ncommitter "
            + IDENT
            + b"\n\nbad\n"
        )
        return literal(repo, "commit", body)

    return {
        "tree-mode": (commit(literal_tree(repo, [(b"100664", b"f", blob)])), "bad file mode"),
        "author": (commit(good_tree, b"author nobody"), "malformed author"),
        "gitmodules": (
            commit(literal_tree(repo, [(b"100644", b".gitmodules", modules)])),
            "bad url",
        ),
    }


@pytest.mark.parametrize("case", ["tree-mode", "author", "gitmodules"])
def test_a_push_of_a_bad_object_is_refused(tmp_path: Path, kind: str, case: str) -> None:
    with serving(tmp_path, kind, "--git-push=force") as served:
        first = served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        bad, reason = _bad_commits(work, first)[case]
        done = push(work, served.url, f"{bad}:refs/heads/master", f"{first}:refs/heads/copy")
        assert done.returncode != 0
        assert "remote unpack failed" in done.stderr and reason in done.stderr
        assert "unpacker error" in done.stdout
        assert served.head("master") == first
        assert served.conn.branches() == ["master"]  # the good ref did not move either
        if served.store is not None:
            assert subprocess.run(["git", "cat-file", "-e", bad], cwd=served.store).returncode
            served.fsck()
        # The connection's error only: the server goes on.
        assert served.commit("master", {"f": b"2\n"}, "after") != first


# -- an endless pack (in-process server: a small cap) ------------------------


def _endless_pack_chunks() -> Iterator[bytes]:
    """A pack that never ends: one blob declared 32 MiB whose zlib stream
    is stored blocks of zeros, for ever."""
    yield b"PACK\0\0\0\2\0\0\0\1" + bytes([0xBF, 0xFF, 0xFF, 0x7F])
    deflate = zlib.compressobj(0)
    while True:
        yield deflate.compress(b"\0" * 65536)


def _push_endless(port: int) -> tuple[int, bytes]:
    """Push an endless pack; (bytes the server took, what it answered)."""
    sock, _ = open_push(port)
    sent = 0

    def write() -> None:
        nonlocal sent
        update = f"{ZERO} {'1' * 40} refs/heads/master\0report-status\n".encode()
        try:
            sock.sendall(pkt(update) + b"0000")
            for chunk in _endless_pack_chunks():
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection

    writer = threading.Thread(target=write)
    writer.start()
    answer = b""
    try:
        while data := sock.recv(65536):
            answer += data
    except OSError:
        pass
    writer.join(60)
    sock.close()
    assert not writer.is_alive(), "the server kept reading an endless pack"
    return sent, answer


CAP = 16 << 20


async def test_an_endless_pack_is_cut_at_the_cap_with_bounded_memory() -> None:
    store = Store.memory()
    context = GitContext(store, StoreWriter(store), "ff", max_pack=CAP, max_object=1 << 30)
    server = GitServer(context, timeout=60)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        tracemalloc.start()
        try:
            sent, answer = await trio.to_thread.run_sync(_push_endless, port)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # The server goes on: a push after that works.
        ok = await trio.to_thread.run_sync(_push_nothing, port)
        nursery.cancel_scope.cancel()
    assert CAP <= sent < 4 * CAP
    assert peak < CAP // 4, f"{peak} bytes allocated at the peak"
    assert b"unpack pack bigger than 16777216 bytes" in answer
    assert b"ng refs/heads/master unpacker error" in answer
    assert ok
    assert store.heads() == {}


def test_remote_max_pack_caps_a_push(tmp_path: Path) -> None:
    """The operator's cap (--remote-max-pack) reaches the push path."""
    work = tmp_path / "work"
    git(None, "init", "-q", "-b", "master", str(work))
    local_commit(work, "big", random.Random(2).randbytes(3 << 20).hex(), "big")
    with serving(tmp_path, "memory", "--git-push", "--remote-max-pack", "1M") as served:
        done = push(work, served.url, "master")
        assert done.returncode != 0
        assert "pack bigger than 1048576 bytes" in done.stderr
        assert served.conn.branches() == []


async def test_git_is_told_the_pack_is_over_the_cap(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(None, "init", "-q", "-b", "master", str(work))
    (work / "big").write_bytes(random.Random(1).randbytes(3 << 20))  # does not compress
    git(work, "add", "big")
    git(work, "commit", "-q", "-m", "big")
    store = Store.memory()
    context = GitContext(store, StoreWriter(store), "ff", max_pack=1 << 20, max_object=1 << 30)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(GitServer(context, timeout=60).serve, listeners)
        done = await trio.to_thread.run_sync(push, work, f"git://127.0.0.1:{port}/", "master")
        nursery.cancel_scope.cancel()
    assert done.returncode != 0
    assert "remote unpack failed: pack bigger than 1048576 bytes" in done.stderr
    assert "unpacker error" in done.stdout
    assert store.heads() == {}


def test_an_object_over_the_file_size_limit_is_refused(tmp_path: Path, kind: str) -> None:
    with serving(tmp_path, kind, "--git-push", "--max-file-size", "64K") as served:
        first = served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        (work / "big").write_bytes(b"x" * (65 << 10))
        git(work, "add", "big")
        git(work, "commit", "-q", "-m", "big")
        done = push(work, served.url, "master")
        assert done.returncode != 0
        assert "larger than 65536 bytes" in done.stderr
        assert served.head("master") == first
        served.fsck()


def _push_nothing(port: int) -> bool:
    sock, refs = open_push(port)
    with sock:
        sock.sendall(b"0000")
        return refs == {"capabilities^{}": ZERO}


# -- reflog and auto-push see a push -----------------------------------------


def test_auto_push_sends_a_pushed_commit_on(tmp_path: Path) -> None:
    bare = tmp_path / "offsite.git"
    git(None, "init", "-q", "--bare", str(bare))
    with serving(tmp_path, "git", "--git-push", "--auto-push", str(bare)) as served:
        served.commit("master", {"f": b"1\n"}, "first")
        work = clone(served, tmp_path / "work")
        new = local_commit(work, "f", "pushed\n", "pushed")
        done = push(work, served.url, "master")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = subprocess.run(
                ["git", "rev-parse", "-q", "--verify", "refs/heads/master"],
                cwd=bare, capture_output=True, text=True, env=GIT_ENV,
            ).stdout.strip()  # fmt: skip
            if found == new:
                break
            time.sleep(0.1)
        assert found == new
        git(bare, "fsck", "--strict", "--no-dangling")


# -- hostile clients: an error for that connection only ----------------------


def test_garbage_and_a_stalled_push_cost_only_their_connection(tmp_path: Path) -> None:
    with serving(tmp_path, "git", "--git-push", "--git-timeout", "1") as served:
        first = served.commit("master", {"f": b"1\n"}, "first")
        assert served.store is not None
        pack_dir = served.store / "objects" / "pack"
        packs_before = sorted(p.name for p in pack_dir.iterdir()) if pack_dir.exists() else []

        sock, _ = open_push(served.port)  # garbage instead of ref updates
        with sock:
            sock.sendall(b"zzzzGARBAGE")
            assert b"ERR " in sock.recv(65536)

        work = clone(served, tmp_path / "work")
        ours = local_commit(work, "f", "2\n", "second")
        revs = f"{ours}\n^{first}\n".encode()
        pack = git_bytes(work, "pack-objects", "--stdout", "--revs", input=revs)
        sock, _ = open_push(served.port)  # half a pack, then silence
        with sock:
            update = f"{first} {ours} refs/heads/master\0report-status\n".encode()
            sock.sendall(pkt(update) + b"0000" + pack[: len(pack) // 2])
            # Told and disconnected by the server (--git-timeout 1; ours is 60 s).
            assert sock.recv(65536) == pkt(b"ERR timed out: nothing received for 1 s")
            assert sock.recv(65536) == b""

        assert served.head("master") == first
        assert subprocess.run(["git", "cat-file", "-e", ours], cwd=served.store).returncode
        packs_after = sorted(p.name for p in pack_dir.iterdir()) if pack_dir.exists() else []
        assert packs_after == packs_before  # no temporary file left behind
        # Other clients never noticed; a real push goes through.
        assert push(work, served.url, "master").returncode == 0
        assert served.head("master") == ours
        served.fsck()


def test_a_huge_ref_name_is_refused_before_it_is_kept(tmp_path: Path) -> None:
    """Found in review: 6,000 updates of 65 KB ref names held 375 MiB while
    the server waited for a pack that never came."""
    with serving(tmp_path, "memory", "--git-push") as served:
        sock, _ = open_push(served.port)
        with sock:
            zero = b"0" * 40
            sock.sendall(pkt(zero + b" " + b"1" * 40 + b" refs/heads/" + b"x" * 2000 + b"\n"))
            answer = sock.recv(65536)
        assert b"ERR a ref name is longer than 1024 bytes" in answer, answer
        served.commit("master", {"f": b"still\n"}, "still serving")
