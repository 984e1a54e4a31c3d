"""`remotes/<name>/{url,fetch,head}`: per-connection remote definitions."""

from __future__ import annotations

import errno as E
import functools
from typing import TYPE_CHECKING

import trio

from datakit import metrics
from datakit import store as st
from datakit.formats import render_fetched_head
from datakit.fs.errors import to_fs_error
from datakit.vfs import (
    BufferFile,
    Cell,
    CommandFile,
    Directory,
    FsError,
    Kind,
    MappingDir,
    Node,
    StreamFile,
)
from datakit.vfs import errors as fserr

if TYPE_CHECKING:
    from datakit.fs.context import FsContext


# Fetches run in their own worker threads, never in trio's default pool that
# durable commits use: a remote that never answers holds its thread until a
# timeout, and 40 of them would otherwise take every thread a commit needs.
# More fetches than this wait for a thread (cancellably).
MAX_FETCH_THREADS = 64


class Remotes:
    """What every connection's `remotes/` shares: the operator's policy
    (allowed schemes, timeouts) and the fetch threads."""

    def __init__(self, policy: st.RemotePolicy) -> None:
        self.policy = policy
        self.threads = trio.CapacityLimiter(MAX_FETCH_THREADS)


class RemoteDir(MappingDir[Node]):
    def __init__(self, name: str, store: st.Store, remotes: Remotes) -> None:
        super().__init__(name)
        self._store = store
        self._remotes = remotes
        self.url = BufferFile("url")
        self.head = Cell[str | None](None)
        self.add(self.url)
        self.add(CommandFile("fetch", self._fetch, may_block=True))
        self.add(StreamFile("head", self.head, render_fetched_head))

    async def _fetch(self, branch: bytes) -> bytes:
        url = bytes(self.url.data).strip().decode("utf-8", "replace")
        # Fetching is network I/O: run it off the event loop so other clients
        # go on. A flush or a disconnect cancels this request: the guard then
        # shuts the connection to the remote, so the thread ends at once.
        guard = st.FetchGuard(self._remotes.policy)
        fetch = functools.partial(
            self._store.fetch, url, branch.decode("utf-8", "replace"), guard=guard
        )
        try:
            commit = await trio.to_thread.run_sync(
                fetch, abandon_on_cancel=True, limiter=self._remotes.threads
            )
        except trio.Cancelled:
            guard.cancel()
            raise
        except st.StoreError as exc:
            metrics.FETCHES.labels("error").inc()
            raise to_fs_error(exc) from exc
        metrics.FETCHES.labels("ok").inc()
        if self.head.value != commit:
            self.head.set(commit)
        return b""


def _check_remote_name(name: str) -> None:
    """A remote is a directory: the names a tree may hold (not ".", "..",
    NUL...) are the names it may have, so every client can list it."""
    try:
        st.check_name(name)
    except st.StoreError as exc:
        raise to_fs_error(exc) from exc


class RemotesDir(MappingDir[RemoteDir]):
    """This connection's remotes (spec 1.4: other connections do not see them)."""

    sorted_listing = True

    def __init__(self, ctx: FsContext) -> None:
        super().__init__("remotes")
        self._store = ctx.store
        self._shared = ctx.remotes

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise fserr.only_directories()

    async def mkdir(self, name: str) -> Node:
        _check_remote_name(name)
        return self.add_new(RemoteDir(name, self._store, self._shared))

    async def remove(self, child: Node) -> None:
        # Upstream could not delete remotes; we can, and clients that clean up expect it.
        self.take(child)

    async def rename(self, child: Node, new_dir: Directory, new_name: str) -> None:
        if new_dir is not self:
            raise FsError("Invalid cross-device link", E.EXDEV)
        _check_remote_name(new_name)
        if new_name in self.children:
            raise fserr.already_exists()
        self.move(child, self, new_name)
