"""Merges whose commits have several merge bases (spec filesystem.md §4.1
step 4): the bases are merged recursively into one virtual base, so a file
the bases disagree about, resolved differently on each side, is a conflict,
as git reports it. The same conflicts through every face: the 9p tree
(a transaction's ``merge`` file), the 9p client backend, the Git backend,
and the automatic merge of a commit whose branch moved.

The histories are written by real ``git`` in a bare repository that each
face then opens. Picking one of the bases instead (the old explicit merge)
silently takes one side, whichever base it picks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from datakit.client import Conflict, Connection, connect
from datakit.client.ninep_client import Client
from tests.gitrepo import GIT_ENV, blob, git, init_bare
from tests.serverthread import running_server

CONFLICT = b"** Conflict **\nChanged on both branches\n"


@dataclass
class History:
    repo: Path
    ours: str  # master's head
    theirs: str  # the commit merged into master
    merged: dict[str, bytes]  # what master's files are after the merge


class Writer:
    """Commits of flat trees, one second apart (as if made in turn)."""

    def __init__(self, repo: Path) -> None:
        self.repo = init_bare(repo)
        self.clock = 1_500_000_000

    def commit(self, files: dict[str, bytes], *parents: str) -> str:
        lines = b"".join(
            b"100644 blob %s\t%s\n" % (blob(self.repo, data).encode(), name.encode())
            for name, data in sorted(files.items())
        )
        tree = git(self.repo, "mktree", input=lines)
        self.clock += 1
        date = f"{self.clock} +0000"
        args = ["git", "commit-tree", tree, "-m", "c"]
        for p in parents:
            args += ["-p", p]
        env = {**GIT_ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        out = subprocess.run(args, cwd=self.repo, env=env, capture_output=True, check=True)
        return out.stdout.decode().strip()

    def done(self, ours: str, theirs: str, merged: dict[str, bytes]) -> History:
        git(self.repo, "update-ref", "refs/heads/master", ours)
        git(self.repo, "update-ref", "refs/heads/theirs", theirs)
        return History(self.repo, ours, theirs, merged)


def criss_cross(repo: Path) -> History:
    """Left and right both merge each other; each keeps its own ``f``, and
    right then changes ``h``. Merge bases: left and right."""
    w = Writer(repo)
    c0 = w.commit({"f": b"base\n", "h": b"h\n"})
    left = w.commit({"f": b"left\n", "h": b"h\n"}, c0)
    right = w.commit({"f": b"right\n", "h": b"h\n"}, c0)
    left2 = w.commit({"f": b"left\n", "h": b"h\n"}, left, right)
    right2 = w.commit({"f": b"right\n", "h": b"h2\n"}, right, left)
    return w.done(left2, right2, {"f": CONFLICT, "h": b"h2\n"})


def three_bases(repo: Path) -> History:
    """Three branches a, b, c off one commit; x merges them keeping a's and
    b's ``f``, y merges them keeping c's and changes ``g``. Merge bases: a,
    b and c (a and b agree about ``f``, c does not)."""
    w = Writer(repo)
    c0 = w.commit({"f": b"0\n", "g": b"0\n"})
    a = w.commit({"f": b"1\n", "g": b"0\n", "p": b"a\n"}, c0)
    b = w.commit({"f": b"1\n", "g": b"0\n", "q": b"b\n"}, c0)
    c = w.commit({"f": b"2\n", "g": b"0\n"}, c0)
    both = {"p": b"a\n", "q": b"b\n"}
    x = w.commit({"f": b"1\n", "g": b"0\n", **both}, a, b, c)
    y = w.commit({"f": b"2\n", "g": b"y\n", **both}, c, b, a)
    return w.done(x, y, {"f": CONFLICT, "g": b"y\n", **both})


HISTORIES = {"criss-cross": criss_cross, "three-bases": three_bases}


@pytest.fixture(params=sorted(HISTORIES))
def history(request: pytest.FixtureRequest, tmp_path: Path) -> History:
    return HISTORIES[request.param](tmp_path / "repo.git")


def test_git_itself_sees_the_conflict(history: History) -> None:
    """The expectation of these tests is git's own answer."""
    bases = git(history.repo, "merge-base", "--all", history.ours, history.theirs).split()
    assert len(bases) > 1
    run = subprocess.run(
        ["git", "merge-tree", "--write-tree", "--name-only", history.ours, history.theirs],
        cwd=history.repo, env=GIT_ENV, capture_output=True, check=False,
    )
    assert run.returncode == 1  # conflicts
    assert run.stdout.decode().split("\n\n")[0].split("\n")[1:] == ["f"]


@pytest.fixture
def server(history: History, tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path, git=str(history.repo)) as address:
        yield address


def test_9p_tree(history: History, server: str) -> None:
    t = "branch/master/transactions/t"
    with Client.connect(server, timeout=30) as c:
        c.mkdir(t)
        c.write(f"{t}/merge", history.theirs.encode())
        assert c.read(f"{t}/merge") == b"ok"
        assert c.read(f"{t}/conflicts") == b"f\n"
        assert {n: c.read(f"{t}/rw/{n}") for n in c.ls(f"{t}/rw")} == history.merged
        assert c.read(f"{t}/base/f") == CONFLICT  # the virtual base keeps its conflict
        assert c.read(f"{t}/parents") == f"{history.ours}\n{history.theirs}\n".encode()


def explicit_merge(conn: Connection, history: History) -> None:
    with conn.branch("master").transaction() as t:
        (_, _, base), conflicts = t.merge(history.theirs)
        assert conflicts == ["f"] == t.conflicts()
        assert {n: t.read_file(n) for n in t.read_dir("")} == history.merged
        assert base.read_file("f") == CONFLICT
        assert [p.id for p in t.parents()] == [history.ours, history.theirs]
        t.replace_file("f", b"resolved\n")
        t.commit("merged")
    head = conn.branch("master").head()
    assert head is not None and [p.id for p in head.parents] == [history.ours, history.theirs]


def test_9p_client(history: History, server: str) -> None:
    with connect(server, timeout=30) as conn:
        explicit_merge(conn, history)


def test_git_backend(history: History) -> None:
    with connect(str(history.repo)) as conn:
        explicit_merge(conn, history)


def automatic_merge(conns: tuple[Connection, Connection], history: History) -> None:
    """A transaction started at ``ours``; meanwhile (another connection)
    the branch moves to ``theirs``: committing needs the same merge."""
    first, other = conns
    with first.branch("master").transaction() as t:
        t.create_file("new", b"n\n")
        other.remove_branch("master")
        other.branch("master").fast_forward(history.theirs)
        with pytest.raises(Conflict) as e:
            t.commit("mine")
        assert str(e.value) == "Merge conflict: f"
        assert not t.closed  # merge the new head, resolve, commit again
        (_, _, base), conflicts = t.merge(history.theirs)
        assert conflicts == ["f"]
        assert base.read_file("f") == CONFLICT
        t.remove("f")
        t.commit("resolved")
    head = first.branch("master").head()
    assert head is not None
    files = {n: head.tree().read_file(n) for n in head.tree().read_dir("")}
    assert files == {n: v for n, v in history.merged.items() if n != "f"} | {"new": b"n\n"}


def test_automatic_merge_9p(history: History, server: str) -> None:
    with connect(server, timeout=30) as a, connect(server, timeout=30) as b:
        automatic_merge((a, b), history)


def test_automatic_merge_git(history: History) -> None:
    with connect(str(history.repo)) as a, connect(str(history.repo)) as b:
        automatic_merge((a, b), history)
