"""The fs write runner (datakit/fs/writes.py): a write on a disk store runs
in a worker thread, and the branch changes it collected are announced once,
in order, on the loop thread before the write returns."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from datakit import store as st
from datakit.fs.writes import StoreWriter


@pytest.mark.parametrize("on_disk", [False, True])
async def test_changes_are_announced_on_the_loop(tmp_path: Path, on_disk: bool) -> None:
    store = st.Store.open(tmp_path / "repo.git") if on_disk else st.Store.memory()
    commit = store.make_commit(store.edit(None).write_tree(), [], b"m")
    loop = threading.get_ident()
    seen: list[tuple[str, str | None, bool]] = []
    store.add_listener(lambda b, h: seen.append((b, h, threading.get_ident() == loop)))
    ran_on: list[int] = []

    def two_moves(*, changes: list[st.BranchChange]) -> str:
        ran_on.append(threading.get_ident())
        store.set_head("a", commit, expected=None, changes=changes)
        assert seen == []  # not yet: collected
        store.rename_branch("a", "b", changes=changes)
        return "done"

    assert await StoreWriter(store)(two_moves) == "done"
    assert (ran_on[0] != loop) is on_disk  # a disk write waits in a worker thread
    assert seen == [("a", commit, True), ("b", commit, True), ("a", None, True)]
    store.close()


async def test_a_failed_write_announces_what_it_did(tmp_path: Path) -> None:
    store = st.Store.open(tmp_path / "repo.git")
    commit = store.make_commit(store.edit(None).write_tree(), [], b"m")
    seen: list[tuple[str, str | None]] = []
    store.add_listener(lambda b, h: seen.append((b, h)))

    def move_then_fail(*, changes: list[st.BranchChange]) -> None:
        store.set_head("a", commit, expected=None, changes=changes)
        raise st.NotFastForward()

    with pytest.raises(st.NotFastForward):
        await StoreWriter(store)(move_then_fail)
    assert seen == [("a", commit)]
    store.close()
