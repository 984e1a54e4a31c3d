"""fs/context.py: what one connection's nodes share, and its transactions."""

from __future__ import annotations

import pytest

from datakit import metrics
from datakit.fs.database import Database
from datakit.fs.root import Root
from datakit.vfs import FsError
from tests.fs.helpers import commit_file, open_transaction
from tests.vfs.helpers import names, walk


def open_transactions_gauge() -> float:
    value = metrics.REGISTRY.get_sample_value("datakit_transactions_open")
    assert value is not None
    return value


def test_connections_share_the_database_but_not_their_transactions(database: Database) -> None:
    a, b = database.context(), database.context()
    assert a.store is b.store is database.store
    assert a.write is b.write
    assert a.remotes is b.remotes
    assert a.head_cell("master") is b.head_cell("master")
    assert a.transactions is not b.transactions


async def test_nodes_are_built_with_the_connection_context(root: Root) -> None:
    tx = await open_transaction(root, "master")
    assert tx.ctx is root.ctx
    assert tx.branch.ctx is root.ctx
    assert root.ctx.transactions == {tx}


async def test_a_transaction_is_counted_once_however_often_it_is_closed(root: Root) -> None:
    before = open_transactions_gauge()
    tx = await open_transaction(root, "master")
    assert open_transactions_gauge() == before + 1
    root.ctx.closed(tx)
    root.ctx.closed(tx)
    tx.parent.discard(tx)  # discarding also tells the context: still once
    assert open_transactions_gauge() == before
    assert root.ctx.transactions == set()


async def test_detach_discards_every_open_transaction_and_commits_nothing(
    database: Database,
) -> None:
    root = database.connect()
    head = await commit_file(root, "master", "f", b"one")
    a = await open_transaction(root, "master", "a")
    await open_transaction(root, "other", "b")
    root.ctx.detach()
    assert root.ctx.transactions == set()
    assert await names(await walk(root, "branch/master/transactions")) == []
    assert await names(await walk(root, "branch/other/transactions")) == []
    assert database.store.head("master") == head
    assert database.store.head("other") is None
    with pytest.raises(FsError):
        a.rw.tree  # noqa: B018 (its edits were let go)
