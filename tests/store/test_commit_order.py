"""The order of a durable commit's disk operations: what makes an
acknowledged commit survive power loss.

Every object a new ref names must be durable (its data fsynced before its
rename into place, the rename made durable by an fsync of its directory)
before the ref's rename publishes it, and the ref's lock file must hold
durable data before that rename. The syscalls are recorded, not timed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from datakit.store import Store, Transaction, _objects

Event = tuple[str, str, str]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """("sync", path, "") for a file's data, ("dirsync", dir, "") and
    ("rename", source, destination), in the order they finished."""
    events: list[Event] = []
    lock = threading.Lock()

    def note(event: Event) -> None:
        with lock:
            events.append(event)

    real_fsync, real_datasync, real_replace = os.fsync, _objects.datasync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        note(("dirsync" if os.path.isdir(path) else "sync", path, ""))

    def datasync(fd: int) -> None:
        real_datasync(fd)
        note(("sync", os.readlink(f"/proc/self/fd/{fd}"), ""))

    def replace(src: str, dst: str) -> None:
        real_replace(src, dst)
        note(("rename", os.path.realpath(src), os.path.realpath(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(_objects, "datasync", datasync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def commit_one(store: Store, content: bytes) -> str:
    txn = Transaction(store, "master")
    txn.tree.put(("dir", "file"), content)
    return txn.commit().commit


def test_objects_and_lock_are_durable_before_the_ref_is_renamed(
    tmp_path: Path, recorded: list[Event]
) -> None:
    repo = (tmp_path / "repo.git").resolve()
    with Store.open(repo) as store:
        commit_one(store, b"first")
        recorded.clear()
        commit = commit_one(store, b"second")
    ref = str(repo / "refs" / "heads" / "master")
    renames = [(i, src, dst) for i, (kind, src, dst) in enumerate(recorded) if kind == "rename"]
    ref_at, lock_path, _ = next((i, src, dst) for i, src, dst in renames if dst == ref)
    objects = [(i, src, dst) for i, src, dst in renames if dst != ref]
    # the commit, its root tree, the tree of dir/ and the blob: all new
    assert len(objects) == 4
    assert (str(repo / "objects" / commit[:2] / commit[2:])) in {dst for _, _, dst in objects}

    def first(event: Event) -> int:
        """Where ``event`` happened first; past the end if it never did."""
        return recorded.index(event) if event in recorded else len(recorded)

    for i, tmp, final in objects:
        assert first(("sync", tmp, "")) < i, f"{final} renamed before its data was fsynced"
        dirsync = first(("dirsync", os.path.dirname(final), ""))
        assert i < dirsync < ref_at, f"{final}'s directory not fsynced before the ref moved"
    assert first(("sync", lock_path, "")) < ref_at
    assert ("dirsync", os.path.dirname(ref), "") in recorded[ref_at + 1 :]
    assert ref_at == renames[-1][0]


def test_a_failed_compare_and_swap_writes_no_object(tmp_path: Path, recorded: list[Event]) -> None:
    with Store.open(tmp_path / "repo.git") as store:
        first = commit_one(store, b"first")
        txn = Transaction(store, "master")
        txn.tree.put(("file",), b"never stored")
        commit = txn.snapshot()
        recorded.clear()
        assert not store.set_head("master", commit, expected=None)  # it is `first`
        assert store.head("master") == first
    assert not [e for e in recorded if e[0] == "rename"]
