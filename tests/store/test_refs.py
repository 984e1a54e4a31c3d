"""Branches: names, compare-and-swap, locks, on-disk layout and polling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datakit.store import (
    InvalidBranchName,
    IsADirectory,
    Kind,
    NotFound,
    Store,
    is_valid_branch_name,
)


def make_commit(store: Store, data: bytes = b"x", parents: tuple[str, ...] = ()) -> str:
    t = store.edit(None)
    t.put(("f",), data)
    return store.make_commit(t.write_tree(), parents, b"msg")


NAMES = [
    "master",
    "feature/x",
    "a.b",
    "a_b-c",
    "v1.0",
    "",
    "foo bar",
    "a..b",
    "-x",
    "x.lock",
    "a/.hidden",
    "a//b",
    "/a",
    "a/",
    "a.",
    "é",
    "a:b",
    "a~1",
    "x.lock/y",
    "HEAD",
    ".x",
]


@pytest.mark.parametrize("name", NAMES)
def test_branch_names_agree_with_git(name: str, git) -> None:  # type: ignore[no-untyped-def]
    ours = is_valid_branch_name(name)
    try:
        git("check-ref-format", "--branch", name)
        git_ok = name != "HEAD"
    except subprocess.CalledProcessError:
        git_ok = False
    datakit_chars = all(c.isascii() and (c.isalnum() or c in "/_.-") for c in name)
    assert ours == (git_ok and datakit_chars and name != "")
    if not ours:
        with pytest.raises(InvalidBranchName) as e:
            Store.memory().set_head(name, None, expected=None)
        assert str(e.value) == f"{name} is not a valid branch name."


def test_set_head_cas(store: Store) -> None:
    c1 = make_commit(store, b"1")
    c2 = make_commit(store, b"2", (c1,))
    assert store.head("master") is None
    assert not store.set_head("master", c1, expected=c2)
    assert store.set_head("master", c1, expected=None)
    assert not store.set_head("master", c2, expected=None)
    assert store.set_head("master", c2, expected=c1)
    assert store.head("master") == c2
    assert store.set_head("dev/x", c1, expected=None)
    assert store.branches() == ["dev/x", "master"]
    assert store.set_head("master", None, expected=c2)
    assert store.branches() == ["dev/x"]
    store.delete_branch("dev/x")
    store.delete_branch("missing")
    assert store.branches() == []
    with pytest.raises(NotFound):
        store.set_head("master", "1" * 40, expected=None)


def test_rename_branch(store: Store) -> None:
    c1 = make_commit(store)
    store.set_head("a", c1, expected=None)
    store.set_head("b", c1, expected=None)
    with pytest.raises(IsADirectory):
        store.rename_branch("a", "b")
    store.rename_branch("a", "c")
    assert store.branches() == ["b", "c"]
    store.rename_branch("nothing", "d")
    assert store.branches() == ["b", "c"]


def test_listeners(store: Store) -> None:
    seen: list[tuple[str, str | None]] = []
    store.add_listener(lambda b, h: seen.append((b, h)))
    c1 = make_commit(store)
    store.integrate("master", c1)
    store.delete_branch("master")
    assert seen == [("master", c1), ("master", None)]
    store.poll()  # our own changes are not reported twice
    assert seen == [("master", c1), ("master", None)]


def test_open_missing_creates_bare_repo(tmp_path: Path, git) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "deep" / "new.git"
    with pytest.raises(NotFound):
        Store.open(path, create=False)
    s = Store.open(path)
    assert git("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
    c = make_commit(s)
    s.integrate("master", c)
    assert git("rev-parse", "master", cwd=path).strip() == c
    git("fsck", "--strict", cwd=path)
    s.close()
    s2 = Store.open(path, create=False)
    assert s2.head("master") == c
    s2.close()


def test_open_non_bare_never_touches_worktree(tmp_path: Path, git) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "file.txt").write_text("hello\n")
    git("add", "file.txt", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    before = git("rev-parse", "HEAD", cwd=work).strip()
    index_before = (work / ".git" / "index").read_bytes()
    s = Store.open(work)
    assert s.head("main") == before
    tree = s.tree(s.commit_info(before).tree)
    assert tree.read(("file.txt",)) == b"hello\n"
    t = s.edit(tree.sha)
    t.put(("new.txt",), b"new")
    c = s.make_commit(t.write_tree(), [before], b"from datakit")
    s.integrate("other", c)
    s.close()
    assert sorted(os.listdir(work)) == [".git", "file.txt"]
    assert (work / ".git" / "index").read_bytes() == index_before
    assert git("log", "--format=%s", "other", cwd=work).split() == ["from", "datakit", "first"]
    git("fsck", "--strict", cwd=work)


def test_packed_refs(tmp_path: Path, git) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "r.git"
    s = Store.open(path)
    c1 = make_commit(s, b"1")
    c2 = make_commit(s, b"2", (c1,))
    s.set_head("master", c1, expected=None)
    s.set_head("other", c1, expected=None)
    git("pack-refs", "--all", cwd=path)
    assert not (path / "refs" / "heads" / "master").exists()
    assert s.head("master") == c1
    assert s.branches() == ["master", "other"]
    assert s.set_head("master", c2, expected=c1)
    assert git("rev-parse", "master", cwd=path).strip() == c2
    assert s.set_head("other", None, expected=c1)
    assert s.branches() == ["master"]
    assert git("for-each-ref", "--format=%(refname)", cwd=path).split() == ["refs/heads/master"]
    git("fsck", "--strict", cwd=path)


def test_stale_lock_is_broken(disk_store: Store) -> None:
    c1 = make_commit(disk_store)
    assert disk_store.path is not None
    lock = Path(disk_store.path) / "refs" / "heads" / "master.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("crashed writer")
    old = time.time() - 60
    os.utime(lock, (old, old))
    assert disk_store.set_head("master", c1, expected=None)
    assert not lock.exists()


def test_live_lock_is_waited_for(disk_store: Store) -> None:
    c1 = make_commit(disk_store)
    assert disk_store.path is not None
    lock = Path(disk_store.path) / "refs" / "heads" / "master.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("busy")
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import time, os; time.sleep(0.3); os.unlink({str(lock)!r})"]
    )
    start = time.monotonic()
    assert disk_store.set_head("master", c1, expected=None)
    assert time.monotonic() - start >= 0.2
    proc.wait()


def test_poll_sees_other_processes(disk_store: Store, git) -> None:  # type: ignore[no-untyped-def]
    c1 = make_commit(disk_store, b"1")
    c2 = make_commit(disk_store, b"2", (c1,))
    disk_store.set_head("master", c1, expected=None)
    seen: list[tuple[str, str | None]] = []
    disk_store.add_listener(lambda b, h: seen.append((b, h)))
    disk_store.poll()
    assert seen == []
    repo = disk_store.path
    disk_store.persist(c2)
    git("update-ref", "refs/heads/master", c2, cwd=repo)
    disk_store.poll()
    assert seen == [("master", c2)]
    git("update-ref", "refs/heads/sub/branch", c1, cwd=repo)
    disk_store.poll()
    assert seen[-1] == ("sub/branch", c1)
    git("update-ref", "-d", "refs/heads/master", cwd=repo)
    disk_store.poll()
    assert seen[-1] == ("master", None)
    n = len(seen)
    disk_store.poll()
    assert len(seen) == n


def test_poll_is_cheap_when_idle(disk_store: Store) -> None:
    c1 = make_commit(disk_store)
    for i in range(20):
        disk_store.set_head(f"b{i}", c1, expected=None)
    disk_store.add_listener(lambda b, h: None)
    old = time.time() - 10
    assert disk_store.path is not None
    for d, _, _ in os.walk(Path(disk_store.path) / "refs" / "heads"):
        os.utime(d, (old, old))
    disk_store.poll()
    start = time.perf_counter()
    for _ in range(100):
        disk_store.poll()
    assert (time.perf_counter() - start) / 100 < 0.001


def test_fsck_after_commits(disk_store: Store, git) -> None:  # type: ignore[no-untyped-def]
    parent = None
    for i in range(5):
        t = disk_store.edit(disk_store.commit_info(parent).tree if parent else None)
        t.put(("dir", f"f{i}"), b"%d" % i)
        t.create_file(("link",), Kind.LINK, b"dir")
        c = disk_store.make_commit(t.write_tree(), [parent] if parent else [], b"c%d" % i)
        parent = disk_store.integrate("master", c)
    git("fsck", "--strict", "--no-dangling", cwd=disk_store.path)
    assert git("rev-list", "--count", "master", cwd=disk_store.path).strip() == "5"


WORKER = r"""
import sys
from datakit.store import Store
path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = Store.open(path)
base = s.head("master")
tree = s.commit_info(base).tree
for i in range(n):
    t = s.edit(tree)
    t.put(("w%d" % worker, "f%d" % i), b"%d" % i)
    c = s.make_commit(t.write_tree(), [base], b"w%d-%d" % (worker, i))
    s.integrate("master", c)
s.close()
"""


@pytest.mark.slow
def test_concurrent_processes_lose_no_update(disk_store: Store, git) -> None:  # type: ignore[no-untyped-def]
    """4 processes x 25 integrate calls on one branch, all from the same base."""
    c0 = make_commit(disk_store)
    disk_store.set_head("master", c0, expected=None)
    assert disk_store.path is not None
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, disk_store.path, str(w), "25"])
        for w in range(4)
    ]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    head = disk_store.head("master")
    assert head is not None
    view = disk_store.tree(disk_store.commit_info(head).tree)
    for w in range(4):
        assert [n for n, _ in view.listdir((f"w{w}",))] == sorted(f"f{i}" for i in range(25))
    git("fsck", "--strict", cwd=disk_store.path)
