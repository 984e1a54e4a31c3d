"""fs/snapshots.py: `snapshots/`, `trees/` and `commits/` over a memory store."""

from __future__ import annotations

import errno
import json

import pytest

from datakit.fs.root import Root
from datakit.vfs import FsError
from tests.fs.helpers import commit_file
from tests.vfs.helpers import names, read, walk


async def test_a_snapshot_shows_the_commit(root: Root) -> None:
    first = await commit_file(root, "master", "f", b"one")
    second = await commit_file(root, "master", "f", b"two")
    snapshot = await walk(root, f"snapshots/{second}")
    assert await names(snapshot) == ["ro", "hash", "msg", "parents", "diff"]
    assert await read(await walk(snapshot, "hash")) == second.encode()
    assert await read(await walk(snapshot, "msg")) == b"a commit\n"
    assert await read(await walk(snapshot, "parents")) == f"{first}\n".encode()
    assert await read(await walk(snapshot, "ro/f")) == b"two"
    assert (await read(await walk(snapshot, f"diff/{first}"))).endswith(b" f\n")


async def test_a_snapshot_stays_as_it_was_when_the_branch_moves(root: Root) -> None:
    first = await commit_file(root, "master", "f", b"one")
    await commit_file(root, "master", "f", b"two")
    assert await read(await walk(root, f"snapshots/{first}/ro/f")) == b"one"


async def test_lookups_are_cached_and_listings_empty(root: Root) -> None:
    head = await commit_file(root, "master", "f", b"one")
    snapshots = await walk(root, "snapshots")
    assert await walk(snapshots, head) is await walk(snapshots, head)
    assert await names(snapshots) == []


async def test_a_name_that_is_no_commit_is_an_error(root: Root) -> None:
    await commit_file(root, "master", "f", b"one")
    for path in ("snapshots/nothex", "trees/F-nothex", f"trees/D-{'0' * 40}"):
        with pytest.raises(FsError) as exc:
            await walk(root, path)
        assert exc.value.errno in (errno.ENOENT, errno.EINVAL), path


async def test_trees_and_commits_show_stored_objects(root: Root) -> None:
    head = await commit_file(root, "master", "f", b"one")
    info = root.ctx.store.commit_info(head)
    assert await read(await walk(root, f"trees/D-{info.tree}/f")) == b"one"
    entry = root.ctx.store.tree(info.tree).lookup(("f",))
    assert entry is not None
    assert await read(await walk(root, f"trees/F-{entry.sha}")) == b"one"
    doc = json.loads(await read(await walk(root, f"commits/{head}")))
    assert doc["hash"] == head and doc["value"]["node"] == info.tree
