"""`snapshots/`, `trees/` and `commits/`: lookup-only views of stored objects."""

from __future__ import annotations

import json

from datakit import store as st
from datakit.formats import parse_node_id, render_message, render_parents
from datakit.fs.diffs import DiffDir
from datakit.fs.errors import store_errors
from datakit.fs.treeview import BlobFile, fixed_tree, tree_view
from datakit.vfs import Directory, Kind, MappingDir, Node, StaticFile
from datakit.vfs import errors as fserr


class _LookupOnly(Directory):
    """Lists empty; looking up a valid name materialises an entry (cached per connection)."""

    def __init__(self, name: str, store: st.Store) -> None:
        super().__init__(name)
        self.store = store
        self._cache: dict[str, Node] = {}

    async def lookup(self, name: str) -> Node:
        node = self._cache.get(name)
        if node is None:
            node = self._cache[name] = self._make(name)
        return node

    def _make(self, name: str) -> Node:
        raise NotImplementedError

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise fserr.read_only_dir()


class SnapshotsDir(_LookupOnly):
    def __init__(self, store: st.Store) -> None:
        super().__init__("snapshots", store)

    def _make(self, name: str) -> Node:
        with store_errors():
            commit = self.store.parse_commit_id(name)
            info = self.store.commit_info(commit)
        return MappingDir(
            name,
            [
                tree_view("ro", self.store, fixed_tree(self.store, info.tree)),
                StaticFile("hash", name.encode()),
                StaticFile("msg", render_message(info.message)),
                StaticFile("parents", render_parents(info.parents)),
                DiffDir(self.store, lambda: info.tree),
            ],
        )


class TreesDir(_LookupOnly):
    def __init__(self, store: st.Store) -> None:
        super().__init__("trees", store)

    def _make(self, name: str) -> Node:
        try:
            kind, sha = parse_node_id(name, st.Kind)
        except ValueError:
            raise fserr.not_found() from None
        kind_of = self.store.object_type(sha)
        if kind is st.Kind.DIR and kind_of == "tree":
            return tree_view(name, self.store, fixed_tree(self.store, sha))
        if kind in _BLOB_KINDS and kind_of == "blob":
            return BlobFile(name, self.store, st.Entry(kind, sha))
        raise fserr.not_found()


# Not GITLINK: a submodule's commit is never in this repository.
_BLOB_KINDS = (st.Kind.FILE, st.Kind.EXEC, st.Kind.LINK)


class CommitsDir(_LookupOnly):
    def __init__(self, store: st.Store) -> None:
        super().__init__("commits", store)

    def _make(self, name: str) -> Node:
        with store_errors():
            commit = self.store.parse_commit_id(name)
            info = self.store.commit_info(commit)
        doc = {
            "hash": commit,
            "value": {
                "node": info.tree,
                "parents": list(info.parents),
                "info": {
                    "date": info.time,
                    "author": info.author.decode("utf-8", "replace"),
                    "message": info.message.decode("utf-8", "replace"),
                },
            },
        }
        return StaticFile(name, json.dumps(doc, separators=(",", ":")).encode())

    def remove_error(self) -> fserr.FsError:
        return fserr.read_only_file()
