"""fs/root.py: one connection's tree, and what detaching it does."""

from __future__ import annotations

from datakit.fs.database import Database
from datakit.fs.root import Root
from tests.fs.helpers import open_transaction
from tests.vfs.helpers import names, walk


async def test_the_root_lists_the_top_directories(root: Root) -> None:
    assert await names(root) == ["branch", "trees", "commits", "snapshots", "remotes", "debug"]


async def test_detaching_a_root_ends_its_transactions_only(database: Database) -> None:
    mine, theirs = database.connect(), database.connect()
    await open_transaction(mine, "master", "t")
    await open_transaction(theirs, "master", "t")
    mine.detach()  # as the server does when the connection closes
    assert await names(await walk(mine, "branch/master/transactions")) == []
    assert await names(await walk(theirs, "branch/master/transactions")) == ["t"]
    assert len(theirs.ctx.transactions) == 1
