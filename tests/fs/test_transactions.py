"""fs/transactions.py: `transactions/`, this connection's open transactions on a branch."""

from __future__ import annotations

import errno

import pytest

from datakit.fs.root import Root
from datakit.fs.transactions import TransactionsDir
from datakit.vfs import Directory, FsError, Kind
from tests.fs.helpers import open_transaction
from tests.vfs.helpers import names, read, walk, write


async def transactions(root: Root, branch: str) -> TransactionsDir:
    node = await walk(root, f"branch/{branch}/transactions")
    assert isinstance(node, TransactionsDir)
    return node


async def test_transactions_are_listed_by_name(root: Root) -> None:
    for name in ("b", "c", "a"):
        await open_transaction(root, "master", name)
    assert await names(await transactions(root, "master")) == ["a", "b", "c"]


async def test_a_transaction_name_is_made_once_and_only_as_a_directory(root: Root) -> None:
    tx = await open_transaction(root, "master", "t")
    directory = await transactions(root, "master")
    assert await directory.lookup("t") is tx
    with pytest.raises(FsError) as exc:
        await directory.mkdir("t")
    assert exc.value.errno == errno.EEXIST
    with pytest.raises(FsError) as exc:
        await directory.create("f", Kind.FILE, None)
    assert exc.value.errno == errno.EPERM


async def test_close_takes_the_transaction_out_of_the_branch_and_the_context(
    root: Root,
) -> None:
    tx = await open_transaction(root, "master", "t")
    await write(await walk(tx, "ctl"), b"close")
    assert await names(await transactions(root, "master")) == []
    assert root.ctx.transactions == set()
    with pytest.raises(FsError) as exc:
        await walk(root, "branch/master/transactions/t")
    assert exc.value.errno == errno.ENOENT


async def test_commit_moves_the_branch_through_the_context_writer(root: Root) -> None:
    tx = await open_transaction(root, "master", "t")
    rw = await walk(tx, "rw")
    assert isinstance(rw, Directory)
    await write(await rw.create("f", Kind.FILE, None), b"data")
    await write(await walk(tx, "ctl"), b"commit")
    assert await read(await walk(root, "branch/master/ro/f")) == b"data"
    assert root.ctx.transactions == set()
