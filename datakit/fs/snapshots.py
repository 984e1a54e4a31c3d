"""`snapshots/`, `trees/` and `commits/`: lookup-only views of stored objects."""

from __future__ import annotations

import json

from datakit import store as st
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
                StaticFile("msg", info.message + b"\n"),
                StaticFile("parents", b"".join(p.encode() + b"\n" for p in info.parents)),
                DiffDir(self.store, lambda: info.tree),
            ],
        )


_TREE_KINDS = {
    "F": ("blob", st.Kind.FILE),
    "X": ("blob", st.Kind.EXEC),
    "L": ("blob", st.Kind.LINK),
}


class TreesDir(_LookupOnly):
    def __init__(self, store: st.Store) -> None:
        super().__init__("trees", store)

    def _make(self, name: str) -> Node:
        prefix, dash, sha = name.strip().partition("-")
        sha = sha.strip()
        if not dash or len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            raise fserr.not_found()
        kind_of = self.store.object_type(sha)
        if prefix == "D" and kind_of == "tree":
            return tree_view(name, self.store, fixed_tree(self.store, sha))
        if prefix in _TREE_KINDS and kind_of == _TREE_KINDS[prefix][0]:
            return BlobFile(name, self.store, st.Entry(_TREE_KINDS[prefix][1], sha))
        raise fserr.not_found()


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
