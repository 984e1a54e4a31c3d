"""What the nodes of one connection's tree share, handed to them when built.

Nodes used to reach it by walking up to the root (`self.branch.root.database
.write`); with the context given to their constructors a node says what it
depends on, and a test can build one directory over a memory store without
the rest of the tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from datakit import metrics
from datakit import store as st
from datakit.fs.remotes import Remotes
from datakit.fs.writes import StoreWriter
from datakit.vfs import Cell

if TYPE_CHECKING:
    from datakit.fs.transactions import TransactionDir


@dataclass(frozen=True, eq=False)
class FsContext:
    """Made once per connection (`Database.connect`); the first four fields
    are shared by every connection, `transactions` is this connection's."""

    store: st.Store
    # `await write(store.method, ...)`: every ref update, run off the loop on disk
    write: StoreWriter
    # The live head of a branch, one cell per branch for every connection
    # (`head.live`, `reflog`, `tree.live`, `ro/`).
    head_cell: Callable[[str], Cell[str | None]]
    remotes: Remotes  # the fetch policy and threads of `remotes/`
    # The open transactions of this connection, on every branch: what
    # `detach` discards when the connection goes.
    transactions: set[TransactionDir] = field(default_factory=set)

    def opened(self, tx: TransactionDir) -> None:
        self.transactions.add(tx)
        metrics.TRANSACTIONS.inc()

    def closed(self, tx: TransactionDir) -> None:
        """`tx` was committed or discarded (once counted, however often told)."""
        if tx in self.transactions:
            self.transactions.discard(tx)
            metrics.TRANSACTIONS.dec()

    def detach(self) -> None:
        """The connection closed: its transactions are discarded, nothing is committed."""
        for tx in list(self.transactions):
            tx.parent.discard(tx)
