"""The root of one connection's tree: branch, trees, commits, snapshots, remotes, debug."""

from __future__ import annotations

from datakit.fs.branches import BranchesDir
from datakit.fs.context import FsContext
from datakit.fs.debug import DebugDir
from datakit.fs.remotes import RemotesDir
from datakit.fs.snapshots import CommitsDir, SnapshotsDir, TreesDir
from datakit.vfs import MappingDir, Node


class Root(MappingDir[Node]):
    def __init__(self, ctx: FsContext) -> None:
        super().__init__("/")
        self.ctx = ctx
        for child in (
            BranchesDir(ctx),
            TreesDir(ctx.store),
            CommitsDir(ctx.store),
            SnapshotsDir(ctx.store),
            RemotesDir(ctx),
            DebugDir(),
        ):
            self.add(child)

    def detach(self) -> None:
        self.ctx.detach()  # the transactions of the connection are per connection
