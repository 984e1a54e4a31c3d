"""Driving the fs tree as a client would, through node calls."""

from __future__ import annotations

from datakit.fs.root import Root
from datakit.fs.transactions import TransactionDir
from datakit.vfs import Directory, Kind
from tests.vfs.helpers import walk, write


async def open_transaction(root: Root, branch: str, name: str = "t") -> TransactionDir:
    """`mkdir branch/<branch>/transactions/<name>` (the branch made if need be)."""
    branches = await walk(root, "branch")
    assert isinstance(branches, Directory)
    if branch not in [n.name for n in await branches.entries()]:
        await branches.mkdir(branch)
    transactions = await walk(root, f"branch/{branch}/transactions")
    assert isinstance(transactions, Directory)
    tx = await transactions.mkdir(name)
    assert isinstance(tx, TransactionDir)
    return tx


async def commit_file(root: Root, branch: str, path: str, data: bytes) -> str:
    """Commit `path` holding `data` on `branch`; the new head."""
    tx = await open_transaction(root, branch)
    rw = await walk(tx, "rw")
    assert isinstance(rw, Directory)
    await write(await rw.create(path, Kind.FILE, None), data)
    await write(await walk(tx, "msg"), b"a commit")
    await write(await walk(tx, "ctl"), b"commit")
    head = root.ctx.store.head(branch)
    assert head is not None
    return head
