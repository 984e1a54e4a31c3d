"""Lookup-only `diff/` directories: `diff/<commit>` lists what changed since that commit."""

from __future__ import annotations

from collections.abc import Callable

from datakit import store as st
from datakit.formats import render_diff
from datakit.fs.errors import store_errors
from datakit.vfs import Directory, Node, StaticFile
from datakit.vfs import errors as fserr
from datakit.vfs.nodes import Kind


class DiffDir(Directory):
    """Always lists empty; `diff/<id>` compares `<id>`'s tree with the current tree."""

    def __init__(self, store: st.Store, current_tree: Callable[[], str | None]) -> None:
        super().__init__("diff")
        self._store = store
        self._current = current_tree

    async def lookup(self, name: str) -> Node:
        with store_errors():
            commit = self._store.parse_commit_id(name)
            old_tree = self._store.commit_info(commit).tree
            new_tree = self._current() or st.EMPTY_TREE
            changes = self._store.diff(old_tree, new_tree)
        return StaticFile(name, render_diff(changes))

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise fserr.read_only_dir()

    def remove_error(self) -> fserr.FsError:
        return fserr.read_only_file()
