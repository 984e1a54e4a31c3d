"""The root of one connection's tree: branch, trees, commits, snapshots, remotes, debug."""

from __future__ import annotations

from typing import TYPE_CHECKING

from datakit.fs.branches import BranchesDir
from datakit.fs.debug import DebugDir
from datakit.fs.remotes import RemotesDir
from datakit.fs.snapshots import CommitsDir, SnapshotsDir, TreesDir
from datakit.vfs import StaticDirectory

if TYPE_CHECKING:
    from datakit.fs.database import Database
    from datakit.fs.transactions import TransactionDir


class Root(StaticDirectory):
    def __init__(self, database: Database) -> None:
        super().__init__("/")
        self.database = database
        self.store = database.store
        self.transactions: set[TransactionDir] = set()
        self.branches = BranchesDir(self)
        for child in (
            self.branches,
            TreesDir(self.store),
            CommitsDir(self.store),
            SnapshotsDir(self.store),
            RemotesDir(self.store, database.remotes),
            DebugDir(),
        ):
            self.add(child)

    def detach(self) -> None:
        """The connection closed: its transactions are discarded, nothing is committed."""
        for tx in list(self.transactions):
            tx.parent.discard(tx)
