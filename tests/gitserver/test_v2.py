"""Protocol v2 upload-pack (datakit/gitserver/v2.py) against real `git`
with `-c protocol.version=2`, and hand-written pkt-lines for what git never
sends: real `datakit serve --listen-git` processes, memory and --git stores.

Every git run traces its packets (GIT_TRACE_PACKET) so that each test also
checks v2 was really spoken: a server answering v0 would pass a clone too.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from datakit.client import connect
from tests.operations.procs import datakit_ports

GIT_ENV = {
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "GIT_TRACE_PACKET": "1",
}
ZERO = "0" * 40


class Server:
    def __init__(self, ports: dict[str, int], proc: subprocess.Popen[bytes]) -> None:
        self.ports = ports
        self.proc = proc
        self.url = f"git://127.0.0.1:{ports['git']}/"

    def commit(self, files: dict[str, bytes], message: str, branch: str = "master") -> str:
        """Write `files` (paths with directories) on `branch`; the new head."""
        with connect(f"tcp://127.0.0.1:{self.ports['9p']}") as conn:
            b = conn.branch(branch)
            with b.transaction() as t:
                for path, data in files.items():
                    if "/" in path:
                        t.make_dirs(path.rsplit("/", 1)[0])
                    t.create_or_replace_file(path, data)
                t.commit(message)
            head = b.head()
            assert head is not None
            return head.id

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.ports['metrics']}/metrics", timeout=10
        ) as resp:
            text = resp.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and line.split("}")[0].count("=") == len(labels):
                got = ",".join(sorted(line[line.index("{") + 1 : line.index("}")].split(",")))
                if got == want:
                    return float(line.rsplit(" ", 1)[1])
        return 0.0


@contextmanager
def started(kind: str, directory: Path) -> Iterator[Server]:
    store = [] if kind == "memory" else ["--git", str(directory / "db.git")]
    with datakit_ports("--listen-git", "tcp://127.0.0.1:0", *store) as (ports, proc):
        yield Server(ports, proc)


@pytest.fixture(params=["memory", "git"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with started(request.param, tmp_path) as s:
        yield s


@pytest.fixture(scope="module", params=["memory", "git"])
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server for tests that only need it to survive what they send."""
    with started(request.param, tmp_path_factory.mktemp("shared")) as s:
        yield s


def git(*args: str, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """`git -c protocol.version=2 ARGS`, traced: stdout, and stderr with the packets."""
    result = subprocess.run(
        ["git", "-c", "protocol.version=2", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=GIT_ENV,
        timeout=120,
    )
    if ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def received(trace: str) -> list[str]:
    """The pkt-lines git traced as received from the server (`xxx< line`)."""
    return [m.group(1) for m in re.finditer(r"packet:\s+\S+< (.*)$", trace, re.M)]


def sent(trace: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"packet:\s+\S+> (.*)$", trace, re.M)]


def assert_v2(trace: str) -> None:
    lines = received(trace)
    assert lines and lines[0] == "version 2", lines[:5]


def plain(*args: str, cwd: Path | None = None, date: str | None = None) -> str:
    """A local git command (no trace); `date`: of the commit it makes."""
    env = {k: v for k, v in GIT_ENV.items() if k != "GIT_TRACE_PACKET"}
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def loose_objects(repo: Path) -> int:
    return int(plain("count-objects", cwd=repo).split()[0])


# -- hand-written pkt-lines ---------------------------------------------------


def pkt(data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return f"{len(raw) + 4:04x}".encode() + raw


FLUSH = b"0000"
DELIM = b"0001"


class Raw:
    """A git:// connection driven by hand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, *parts: bytes) -> None:
        self.sock.sendall(b"".join(parts))

    def _take(self, n: int) -> bytes | None:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read(self) -> bytes | str | None:
        """A payload, "flush"/"delim", or None at EOF."""
        head = self._take(4)
        if head is None:
            return None
        size = int(head, 16)
        if size < 4:
            return {0: "flush", 1: "delim", 2: "end"}[size]
        body = self._take(size - 4)
        assert body is not None, "connection closed mid pkt-line"
        return body

    def read_until_flush(self) -> list[bytes | str]:
        lines: list[bytes | str] = []
        while (p := self.read()) not in ("flush", None):
            lines.append(p)
        return lines

    def rest(self) -> list[bytes | str]:
        """Everything until the server closes the connection."""
        lines: list[bytes | str] = []
        while (p := self.read()) is not None:
            lines.append(p)
        return lines


def open_v2(port: int) -> Raw:
    raw = Raw(port)
    raw.send(pkt(b"git-upload-pack /\0host=127.0.0.1\0\0version=2\0"))
    caps = raw.read_until_flush()
    assert caps[0] == b"version 2\n", caps
    assert b"fetch=shallow wait-for-done ref-in-want\n" in caps
    return raw


def command(name: str, *args: str, caps: tuple[str, ...] = ("agent=test/1",)) -> bytes:
    return b"".join(
        [pkt(f"command={name}\n"), *(pkt(c + "\n") for c in caps), DELIM]
        + [pkt(a + "\n") for a in args]
        + [FLUSH]
    )


def ls_refs(port: int, *args: str) -> list[bytes | str]:
    raw = open_v2(port)
    try:
        raw.send(command("ls-refs", *args))
        return raw.read_until_flush()
    finally:
        raw.close()


def error_of(lines: list[bytes | str]) -> str:
    errors = [p for p in lines if isinstance(p, bytes) and p.startswith(b"ERR ")]
    assert errors, lines
    return errors[0].decode()


# -- real git ----------------------------------------------------------------


def test_clone_is_v2_and_passes_fsck(server: Server, tmp_path: Path) -> None:
    server.commit({"a/b/c": b"one", "top": b"x"}, "first")
    server.commit({"a/b/c": b"two", "a/d": b"y"}, "second")
    head = server.commit({"e/f/g/h": b"deep"}, "third")
    clone = tmp_path / "clone"
    result = git("clone", server.url, str(clone))
    assert_v2(result.stderr)
    assert "command=fetch" in sent(result.stderr)
    plain("fsck", "--strict", cwd=clone)
    assert plain("rev-parse", "HEAD", cwd=clone) == head
    assert plain("log", "--format=%s", cwd=clone).split("\n") == ["third", "second", "first"]
    assert (clone / "a" / "b" / "c").read_bytes() == b"two"
    assert (clone / "e" / "f" / "g" / "h").read_bytes() == b"deep"
    assert server.metric("datakit_git_requests_total", service="clone", outcome="ok") == 1


def test_clones_while_commits_go_on(server: Server, tmp_path: Path) -> None:
    """Each command reads one snapshot: clones racing commits are whole."""
    heads = [server.commit({f"d{i}/f": b"%d" % i}, f"c{i}") for i in range(5)]
    errors: list[BaseException] = []

    def committing() -> None:
        try:
            for i in range(5, 45):
                heads.append(server.commit({f"d{i % 7}/f": b"%d" % i}, f"c{i}"))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    writer = threading.Thread(target=committing)
    writer.start()
    try:
        for n in range(3):
            clone = tmp_path / f"clone{n}"
            git("clone", "-q", server.url, str(clone))
            plain("fsck", "--strict", cwd=clone)
            assert plain("rev-parse", "HEAD", cwd=clone) in heads
    finally:
        writer.join(120)
    assert not errors
    clone = tmp_path / "clone0"
    git("fetch", "-q", cwd=clone)
    assert plain("rev-parse", "origin/master", cwd=clone) == heads[-1]
    assert plain("rev-list", "--count", "origin/master", cwd=clone) == "45"


def test_ls_remote_and_ref_prefix(server: Server, tmp_path: Path) -> None:
    master = server.commit({"f": b"1"}, "m")
    feature = server.commit({"f": b"2"}, "f", branch="feature-x")
    other = server.commit({"f": b"3"}, "o", branch="other")
    result = git("ls-remote", server.url)
    assert_v2(result.stderr)
    listed = [line.split("\t") for line in result.stdout.splitlines()]
    assert listed == [
        [master, "HEAD"],
        [feature, "refs/heads/feature-x"],
        [master, "refs/heads/master"],
        [other, "refs/heads/other"],
    ]
    heads = git("ls-remote", "--heads", server.url)
    assert "ref-prefix refs/heads/" in sent(heads.stderr)
    assert "HEAD" not in heads.stdout
    assert server.metric("datakit_git_requests_total", service="ls-remote", outcome="ok") == 2
    # The server filters by itself (git would filter what it is sent too).
    assert ls_refs(
        server.ports["git"], "ref-prefix refs/heads/fea", "ref-prefix HEAD", "symrefs"
    ) == [
        f"{master} HEAD symref-target:refs/heads/master\n".encode(),
        f"{feature} refs/heads/feature-x\n".encode(),
    ]
    assert ls_refs(server.ports["git"], "ref-prefix refs/tags/") == []


def test_fetch_sends_only_new_objects(server: Server, tmp_path: Path) -> None:
    first = server.commit({"a/b/c": b"one", "x/y": b"kept"}, "first")
    server.commit({"a/b/c": b"two"}, "second")
    clone = tmp_path / "clone"
    git("clone", server.url, str(clone))
    assert loose_objects(clone) == 0  # all in the clone's pack
    new = server.commit({"a/b/c": b"three"}, "third")
    result = git("fetch", cwd=clone)
    assert_v2(result.stderr)
    lines = received(result.stderr)
    assert f"ACK {plain('rev-parse', 'HEAD', cwd=clone)}" in lines
    assert f"ACK {first}" in lines
    assert "ready" in lines
    # commit, root tree, a, a/b and the blob: the unchanged x/ is not sent.
    # (Fewer than fetch.unpackLimit objects arrive as loose objects.)
    assert loose_objects(clone) == 5
    assert plain("rev-parse", "origin/master", cwd=clone) == new
    plain("fsck", "--strict", cwd=clone)
    assert server.metric("datakit_git_requests_total", service="fetch", outcome="ok") == 1


def test_fetch_negotiates_over_several_rounds(server: Server, tmp_path: Path) -> None:
    """The clone has many commits the server never saw: its first haves are
    unknown (NAK), and the common one comes in a later round."""
    base = server.commit({"f": b"0"}, "base")
    clone = tmp_path / "clone"
    git("clone", server.url, str(clone))
    plain("checkout", "-q", "-b", "local", cwd=clone)
    for i in range(40):
        (clone / "local").write_text(str(i))
        plain("add", "local", cwd=clone)
        # Later than the server's commits: git sends the newest haves first.
        plain("commit", "-q", "-m", f"local {i}", cwd=clone, date=f"2090-01-01T00:00:{i:02} +0000")
    new = server.commit({"f": b"upstream 1", "g/h": b"upstream 2"}, "upstream")
    before = loose_objects(clone)
    result = git("fetch", cwd=clone)
    lines = received(result.stderr)
    assert sent(result.stderr).count("command=fetch") >= 2
    assert lines.count("NAK") >= 1 and f"ACK {base}" in lines
    assert plain("rev-parse", "origin/master", cwd=clone) == new
    # commit, root tree, g and two blobs.
    assert loose_objects(clone) == before + 5
    plain("fsck", "--strict", cwd=clone)


def test_shallow_clone_then_deepen(server: Server, tmp_path: Path) -> None:
    ids = [server.commit({"f": str(i).encode(), f"d{i}/g": b"x"}, f"c{i}") for i in range(5)]
    clone = tmp_path / "clone"
    result = git("clone", "--depth", "1", server.url, str(clone))
    assert_v2(result.stderr)
    assert "deepen 1" in sent(result.stderr)
    assert f"shallow {ids[-1]}" in received(result.stderr)
    assert plain("rev-list", "--count", "HEAD", cwd=clone) == "1"
    assert (clone / ".git" / "shallow").read_text().split() == [ids[-1]]
    plain("fsck", "--strict", cwd=clone)

    deeper = git("fetch", "--deepen", "1", cwd=clone)
    assert "deepen-relative" in sent(deeper.stderr)
    lines = received(deeper.stderr)
    assert f"unshallow {ids[-1]}" in lines and f"shallow {ids[-2]}" in lines
    assert plain("rev-list", "--count", "origin/master", cwd=clone) == "2"
    assert (clone / ".git" / "shallow").read_text().split() == [ids[-2]]
    plain("fsck", "--strict", cwd=clone)

    newer = server.commit({"f": b"new"}, "c5")
    git("fetch", cwd=clone)  # a plain fetch keeps the boundary where it is
    assert plain("rev-list", "--count", "origin/master", cwd=clone) == "3"
    assert (clone / ".git" / "shallow").read_text().split() == [ids[-2]]
    plain("fsck", "--strict", cwd=clone)

    more = server.commit({"f": b"newer"}, "c6")
    git("fetch", "--depth", "3", cwd=clone)
    assert plain("rev-list", "--count", "origin/master", cwd=clone) == "3"
    assert sorted((clone / ".git" / "shallow").read_text().split()) == sorted(ids[-2:])
    assert plain("rev-parse", "origin/master", cwd=clone) == more
    assert newer in plain("rev-list", "origin/master", cwd=clone).split()

    git("fetch", "--unshallow", cwd=clone)
    assert not (clone / ".git" / "shallow").exists()
    assert plain("rev-list", "--count", "origin/master", cwd=clone) == "7"
    plain("fsck", "--strict", cwd=clone)


def test_shallow_since_and_shallow_exclude(server: Server, tmp_path: Path) -> None:
    first = server.commit({"f": b"1"}, "one")
    with connect(f"tcp://127.0.0.1:{server.ports['9p']}") as conn:
        conn.branch("old").fast_forward(first)
    time.sleep(1.1)  # commit times are in seconds: the next ones are later
    second = server.commit({"f": b"3"}, "three")
    third = server.commit({"f": b"4"}, "four")
    with connect(f"tcp://127.0.0.1:{server.ports['9p']}") as conn:
        since = conn.commit(second).time
        assert conn.commit(first).time < since
    by_time = tmp_path / "by-time"
    result = git("clone", f"--shallow-since={since}", server.url, str(by_time))
    assert f"deepen-since {since}" in sent(result.stderr)
    assert plain("rev-list", "HEAD", cwd=by_time).split() == [third, second]
    assert (by_time / ".git" / "shallow").read_text().split() == [second]
    plain("fsck", "--strict", cwd=by_time)

    # The history of `old` (the first commit) is left out.
    by_ref = tmp_path / "by-ref"
    result = git("clone", "--shallow-exclude=old", "--single-branch", server.url, str(by_ref))
    assert "deepen-not old" in sent(result.stderr)
    assert plain("rev-list", "HEAD", cwd=by_ref).split() == [third, second]
    assert (by_ref / ".git" / "shallow").read_text().split() == [second]
    plain("fsck", "--strict", cwd=by_ref)

    # Nothing that recent: git's own error.
    late = git(
        "clone", f"--shallow-since={since + 3600}", server.url, str(tmp_path / "x"), ok=False
    )
    assert "remote error: no commits selected for shallow requests" in late.stderr
    unknown = git("clone", "--shallow-exclude=nope", server.url, str(tmp_path / "y"), ok=False)
    assert "remote error: deepen-not: no such ref 'nope'" in unknown.stderr


def test_clone_of_an_empty_database(server: Server, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    result = git("clone", server.url, str(clone))
    assert_v2(result.stderr)
    assert "warning: You appear to have cloned an empty repository." in result.stderr
    assert "unborn HEAD symref-target:refs/heads/master" in received(result.stderr)
    assert plain("symbolic-ref", "HEAD", cwd=clone) == "refs/heads/master"
    # The first commit arrives by an ordinary fetch.
    head = server.commit({"f": b"1"}, "first")
    git("fetch", cwd=clone)
    assert plain("rev-parse", "origin/master", cwd=clone) == head


# -- hand-written requests -------------------------------------------------


def test_fetch_by_want_streams_a_valid_pack(server: Server, tmp_path: Path) -> None:
    server.commit({"a/b": b"1"}, "one")
    head = server.commit({"a/b": b"2", "c": b"3"}, "two")
    raw = open_v2(server.ports["git"])
    raw.send(command("fetch", f"want {head}", "no-progress", "done"))
    assert raw.read() == b"packfile\n"
    pack = bytearray()
    for part in raw.read_until_flush():
        assert isinstance(part, bytes) and part[:1] == b"\x01", part[:40]
        pack += part[1:]
    raw.send(FLUSH)  # the client is done: the server closes
    assert raw.rest() == []
    raw.close()
    repo = tmp_path / "r.git"
    plain("init", "-q", "--bare", str(repo))
    subprocess.run(
        ["git", "index-pack", "--stdin", "--strict"],
        cwd=repo,
        input=bytes(pack),
        check=True,
        capture_output=True,
    )
    # 2 commits, 2 root trees, 2 trees `a`, 3 blobs: the whole history, all there.
    assert len(plain("rev-list", "--objects", head, cwd=repo).splitlines()) == 9


def test_a_tip_shown_earlier_on_the_connection_stays_wantable(server: Server) -> None:
    """A branch moving between ls-refs and fetch does not fail the fetch."""
    old = server.commit({"f": b"1"}, "one")
    raw = open_v2(server.ports["git"])
    raw.send(command("ls-refs", "ref-prefix refs/heads/"))
    assert raw.read_until_flush() == [f"{old} refs/heads/master\n".encode()]
    new = server.commit({"f": b"2"}, "two")
    raw.send(command("fetch", f"want {old}", "want-ref refs/heads/master", "no-progress", "done"))
    assert raw.read_until_flush()[:3] == [
        b"wanted-refs\n",
        f"{new} refs/heads/master\n".encode(),
        "delim",
    ]
    raw.close()
    # Another connection was never shown `old`: refused there.
    other = open_v2(server.ports["git"])
    other.send(command("fetch", f"want {old}", "done"))
    assert "only branch tips" in error_of(other.rest())
    other.close()


def test_progress_and_wait_for_done(server: Server) -> None:
    first = server.commit({"f": b"1"}, "one")
    head = server.commit({"f": b"2"}, "two")
    raw = open_v2(server.ports["git"])
    # wait-for-done: acknowledgments, but never "ready" before "done".
    raw.send(command("fetch", f"want {head}", f"have {first}", "wait-for-done"))
    assert raw.read_until_flush() == [b"acknowledgments\n", f"ACK {first}\n".encode()]
    # Without no-progress, channel 2 says something before the pack.
    raw.send(command("fetch", f"want {head}", f"have {first}", "done"))
    assert raw.read() == b"packfile\n"
    bands = [p[:1] for p in raw.read_until_flush() if isinstance(p, bytes)]
    assert bands[0] == b"\x02" and b"\x01" in bands
    raw.close()


def test_want_of_a_missing_or_unadvertised_object_is_an_error(server: Server) -> None:
    first = server.commit({"f": b"1"}, "one")
    server.commit({"f": b"2"}, "two")
    port = server.ports["git"]
    for want, reason in ((ZERO, "no such object"), (first, "only branch tips")):
        raw = open_v2(port)
        raw.send(command("fetch", f"want {want}", "done"))
        lines = raw.rest()  # the server answers and closes
        raw.close()
        message = error_of(lines)
        assert f"not our ref {want}" in message and reason in message
        assert b"packfile\n" not in lines
    assert server.metric("datakit_git_requests_total", service="fetch", outcome="error") == 2
    # The server goes on serving others.
    assert git("ls-remote", server.url).stdout.count("refs/heads/master") == 1


@pytest.mark.parametrize(
    "request_bytes, expected",
    [
        (b"zzzz", "invalid pkt-line length prefix"),
        (b"0003", "invalid pkt-line length 3"),
        (command("frobnicate"), "unknown command 'frobnicate'"),
        (command("ls-refs", caps=("bundle-uri",)), "unknown capability 'bundle-uri'"),
        (command("ls-refs", "gimme"), "unexpected argument 'gimme'"),
        (command("fetch", "deepen 1", "deepen-since 1", "done"), "cannot be used together"),
        (command("fetch", "want xyz", "done"), "not an object id"),
    ],
    ids=["garbage", "short", "command", "capability", "argument", "deepen-twice", "want"],
)
def test_bad_requests_close_the_connection_with_an_error(
    shared_server: Server, request_bytes: bytes, expected: str
) -> None:
    server = shared_server
    head = server.commit({"f": b"1"}, "one")
    raw = open_v2(server.ports["git"])
    raw.send(request_bytes)
    message = error_of(raw.rest())  # ... and then EOF: the connection is closed
    raw.close()
    assert expected in message
    # Nothing else suffered: 9p commits and other Git clients go on.
    new = server.commit({"f": b"2"}, "two")
    assert new != head
    assert ls_refs(server.ports["git"], "ref-prefix refs/heads/") == [
        f"{new} refs/heads/master\n".encode()
    ]


def test_too_many_haves_are_refused(server: Server) -> None:
    head = server.commit({"f": b"1"}, "one")
    raw = open_v2(server.ports["git"])
    haves = "".join(f"have {i:040x}\n" for i in range(100_001))
    raw.send(command("fetch", f"want {head}", *haves.splitlines()))
    message = error_of(raw.rest())
    raw.close()
    assert "more than 100000 have lines" in message


def test_a_client_stalled_mid_command_is_disconnected(tmp_path: Path) -> None:
    with datakit_ports("--listen-git", "tcp://127.0.0.1:0", "--git-timeout", "2") as (ports, proc):
        server = Server(ports, proc)
        head = server.commit({"f": b"1"}, "one")
        raw = open_v2(ports["git"])
        # A fetch cut short: no flush-pkt ends its arguments.
        raw.send(pkt("command=fetch\n"), DELIM, pkt(f"want {head}\n"))
        # Meanwhile others are served.
        assert git("ls-remote", server.url).stdout.startswith(f"{head}\tHEAD")
        assert error_of(raw.rest()) == "ERR timed out: nothing received for 2 s"
        raw.close()
