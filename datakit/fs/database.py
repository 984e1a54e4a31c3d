"""State shared by every connection: the store and one live cell per branch head."""

from __future__ import annotations

import weakref

from datakit import store as st
from datakit.fs.context import FsContext
from datakit.fs.remotes import Remotes
from datakit.fs.root import Root
from datakit.fs.writes import StoreWriter
from datakit.vfs import Cell


class Database:
    """Builds each connection's tree (`connect`) over one shared store.

    Transactions, remotes and `mkdir`-ed branches are per connection (spec 1.4),
    but branch heads are global: one cell per branch, updated by the store's
    change listener, feeds every `head.live`, `reflog`, `tree.live` and `ro/`.
    """

    def __init__(self, store: st.Store, *, remotes: st.RemotePolicy | None = None) -> None:
        self.store = store
        # which remotes may be fetched, and the fetch threads (`remotes/`)
        self.remotes = Remotes(remotes or st.RemotePolicy())
        self.write = StoreWriter(store)  # `await write(store.method, ...)` for ref updates
        # Held by the nodes of the connections that look at a branch: a
        # branch name someone made with mkdir and never committed leaves
        # nothing here once no connection has it anymore.
        self._cells: weakref.WeakValueDictionary[str, Cell[str | None]] = (
            weakref.WeakValueDictionary()
        )
        store.add_listener(self._on_branch_change)

    def head_cell(self, branch: str) -> Cell[str | None]:
        cell = self._cells.get(branch)
        if cell is None:
            cell = self._cells[branch] = Cell(self.store.head(branch))
        return cell

    def _on_branch_change(self, branch: str, head: str | None) -> None:
        cell = self._cells.get(branch)
        if cell is not None and cell.value != head:
            cell.set(head)

    def context(self) -> FsContext:
        """A new connection's context: the shared state, no transactions yet."""
        return FsContext(self.store, self.write, self.head_cell, self.remotes)

    def connect(self) -> Root:
        return Root(self.context())
