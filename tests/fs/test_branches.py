"""fs/branches.py: `branch/` and `branch/<name>/` over a memory store."""

from __future__ import annotations

import errno

import pytest

from datakit.fs.branches import BranchDir, BranchesDir
from datakit.fs.database import Database
from datakit.fs.root import Root
from datakit.vfs import FsError
from tests.fs.helpers import commit_file, open_transaction
from tests.vfs.helpers import names, read, walk, write


async def branches(root: Root) -> BranchesDir:
    node = await walk(root, "branch")
    assert isinstance(node, BranchesDir)
    return node


async def test_a_committed_branch_shows_in_every_connection(database: Database) -> None:
    mine, theirs = database.connect(), database.connect()
    head = await commit_file(mine, "master", "f", b"data")
    assert await names(await branches(theirs)) == ["master"]
    assert await read(await walk(theirs, "branch/master/head")) == f"{head}\n".encode()
    assert await read(await walk(theirs, "branch/master/head.live")) == f"{head}\n".encode()
    assert await read(await walk(theirs, "branch/master/ro/f")) == b"data"


async def test_a_branch_made_with_mkdir_is_this_connections_until_committed(
    database: Database,
) -> None:
    mine, theirs = database.connect(), database.connect()
    await (await branches(mine)).mkdir("new")
    assert await names(await branches(mine)) == ["new"]
    assert await names(await branches(theirs)) == []
    with pytest.raises(FsError) as exc:
        await walk(theirs, "branch/new")
    assert exc.value.errno == errno.ENOENT


async def test_a_branch_is_the_same_node_at_each_lookup(root: Root) -> None:
    await commit_file(root, "master", "f", b"data")
    first = await walk(root, "branch/master")
    assert await walk(root, "branch/master") is first
    assert (await branches(root)).children["master"] is first


async def test_the_head_cell_follows_commits(database: Database, root: Root) -> None:
    cell = database.head_cell("master")
    assert cell.value is None
    head = await commit_file(root, "master", "f", b"one")
    assert cell.value == head
    assert root.ctx.head_cell("master") is cell


async def test_rename_keeps_the_node_and_ends_its_transactions(
    database: Database, root: Root
) -> None:
    head = await commit_file(root, "master", "f", b"data")
    node = await walk(root, "branch/master")
    assert isinstance(node, BranchDir)
    await open_transaction(root, "master", "open")
    directory = await branches(root)
    await directory.rename(node, directory, "main")
    assert node.name == "main" and await walk(root, "branch/main") is node
    assert await names(directory) == ["main"]
    assert database.store.head("main") == head and database.store.head("master") is None
    assert await names(await walk(node, "transactions")) == []
    assert root.ctx.transactions == set()
    assert await read(await walk(node, "head")) == f"{head}\n".encode()


async def test_rename_onto_an_existing_branch_is_eisdir(root: Root) -> None:
    await commit_file(root, "a", "f", b"a")
    await commit_file(root, "b", "f", b"b")
    directory = await branches(root)
    with pytest.raises(FsError) as exc:
        await directory.rename(await directory.lookup("a"), directory, "b")
    assert exc.value.errno == errno.EISDIR


async def test_remove_deletes_the_branch_and_its_transactions(
    database: Database, root: Root
) -> None:
    await commit_file(root, "master", "f", b"data")
    await open_transaction(root, "master", "open")
    directory = await branches(root)
    await directory.remove(await directory.lookup("master"))
    assert database.store.head("master") is None
    assert await names(directory) == []
    assert root.ctx.transactions == set()


async def test_fast_forward_moves_the_head(database: Database, root: Root) -> None:
    first = await commit_file(root, "master", "f", b"one")
    second = await commit_file(root, "master", "f", b"two")
    await (await branches(root)).mkdir("late")
    await write(await walk(root, "branch/late/fast-forward"), first.encode())
    assert database.store.head("late") == first
    await write(await walk(root, "branch/late/fast-forward"), second.encode())
    assert database.store.head("late") == second
