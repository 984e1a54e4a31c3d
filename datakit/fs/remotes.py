"""`remotes/<name>/{url,fetch,head}`: per-connection remote definitions."""

from __future__ import annotations

import errno as E

import trio

from datakit import metrics
from datakit import store as st
from datakit.fs.errors import to_fs_error
from datakit.vfs import (
    BufferFile,
    Cell,
    CommandFile,
    Directory,
    FsError,
    Kind,
    Node,
    StaticDirectory,
    StreamFile,
)
from datakit.vfs import errors as fserr


def _render(head: str | None) -> bytes:
    return f"{head}\n".encode() if head else b""


class RemoteDir(StaticDirectory):
    def __init__(self, name: str, store: st.Store) -> None:
        super().__init__(name)
        self._store = store
        self.url = BufferFile("url")
        self.head = Cell[str | None](None)
        self.add(self.url)
        self.add(CommandFile("fetch", self._fetch, may_block=True))
        self.add(StreamFile("head", self.head, _render))

    async def _fetch(self, branch: bytes) -> bytes:
        url = bytes(self.url.data).strip().decode("utf-8", "replace")
        # Fetching is network I/O: run it off the event loop so other clients go on.
        try:
            commit = await trio.to_thread.run_sync(
                self._store.fetch, url, branch.decode("utf-8", "replace")
            )
        except st.StoreError as exc:
            metrics.FETCHES.labels("error").inc()
            raise to_fs_error(exc) from exc
        metrics.FETCHES.labels("ok").inc()
        if self.head.value != commit:
            self.head.set(commit)
        return b""


class RemotesDir(Directory):
    def __init__(self, store: st.Store) -> None:
        super().__init__("remotes")
        self._store = store
        self._remotes: dict[str, RemoteDir] = {}

    async def lookup(self, name: str) -> Node:
        try:
            return self._remotes[name]
        except KeyError:
            raise fserr.not_found() from None

    async def entries(self) -> list[Node]:
        return [self._remotes[k] for k in sorted(self._remotes)]

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise fserr.only_directories()

    async def mkdir(self, name: str) -> Node:
        if name in self._remotes:
            raise fserr.already_exists()
        remote = self._remotes[name] = RemoteDir(name, self._store)
        return remote

    async def remove(self, child: Node) -> None:
        # Upstream could not delete remotes; we can, and clients that clean up expect it.
        if self._remotes.get(child.name) is not child:
            raise fserr.not_found()
        del self._remotes[child.name]

    async def rename(self, child: Node, new_dir: Directory, new_name: str) -> None:
        if new_dir is not self:
            raise FsError("Invalid cross-device link", E.EXDEV)
        if new_name in self._remotes:
            raise fserr.already_exists()
        if self._remotes.get(child.name) is not child:
            raise fserr.not_found()
        del self._remotes[child.name]
        child.name = new_name
        self._remotes[new_name] = child  # type: ignore[assignment]
