"""The live store seen by dulwich's Git server code: an object container
over :meth:`Store.raw_object` and the branches as refs, read once per
request so that a connection advertises and serves one consistent state.

Only reading is offered here; objects a push brings are checked and stored
by :mod:`datakit.gitserver.receive`, never through dulwich's object store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.object_store import BaseObjectStore
from dulwich.objects import ObjectID, sha_to_hex
from dulwich.refs import DictRefsContainer, Ref

from datakit.store import Store

from .walk import objects_to_send

HEAD = Ref(b"HEAD")
DEFAULT_BRANCH = "master"


def _hex(name: bytes) -> str:
    return (sha_to_hex(name) if len(name) == 20 else name).decode("ascii")  # type: ignore[arg-type]


class StoreObjects(BaseObjectStore):
    """Read-only dulwich object container over the store's objects."""

    def __init__(self, store: Store) -> None:
        super().__init__(object_format=DEFAULT_OBJECT_FORMAT)
        self.store = store

    def get_raw(self, name: Any) -> tuple[int, bytes]:
        try:
            found = self.store.raw_object(_hex(name))
        except UnicodeDecodeError:
            found = None
        if found is None:
            raise KeyError(name)
        return found

    def contains_loose(self, sha: Any) -> bool:
        try:
            return self.store.object_type(_hex(sha)) is not None
        except UnicodeDecodeError:
            return False

    def __contains__(self, sha: Any) -> bool:
        return self.contains_loose(sha)

    def __iter__(self) -> Iterator[ObjectID]:
        # Listing every object would mean scanning packs and loose objects;
        # nothing the server side does needs it.
        raise NotImplementedError("the store's objects are not enumerable")

    def add_object(self, obj: Any) -> None:
        raise NotImplementedError("objects are stored only by a checked push")


def advertised_refs(heads: Mapping[str, str]) -> tuple[dict[Ref, ObjectID], Ref | None]:
    """The refs a Git client sees for these branch heads, and the branch
    HEAD names: master if there is one, else the first branch by name."""
    refs = {
        Ref(b"refs/heads/" + name.encode()): ObjectID(sha.encode()) for name, sha in heads.items()
    }
    if not heads:
        return refs, None
    default = DEFAULT_BRANCH if DEFAULT_BRANCH in heads else min(heads)
    return refs, Ref(b"refs/heads/" + default.encode())


class StoreRepo:
    """dulwich's ``BackendRepo`` for one request: the store's objects and a
    snapshot of its branches taken when the request started."""

    object_format = DEFAULT_OBJECT_FORMAT

    def __init__(self, store: Store) -> None:
        self.store = store
        self.object_store = StoreObjects(store)
        heads, default = advertised_refs(store.heads())
        self._heads = heads
        self.refs = DictRefsContainer(dict(heads))  # type: ignore[arg-type]
        if default is not None:
            self.refs.set_symbolic_ref(HEAD, default)
        self.default_branch = default

    def get_refs(self) -> dict[Ref, ObjectID]:
        """The advertised refs, HEAD first as git lists it."""
        refs: dict[Ref, ObjectID] = {}
        if self.default_branch is not None:
            refs[HEAD] = self._heads[self.default_branch]
        refs.update(self._heads)
        return refs

    def get_peeled(self, ref: Ref) -> ObjectID | None:
        # Branches hold commits, never tags: nothing to peel.
        return self.get_refs().get(ref)

    def find_missing_objects(
        self,
        determine_wants: Callable[..., list[ObjectID]],
        graph_walker: Any,
        progress: Callable[[bytes], None] | None,
        *,
        get_tagged: Callable[[], dict[ObjectID, ObjectID]] | None = None,
        depth: int | None = None,
    ) -> list[tuple[ObjectID, None]] | None:
        """dulwich's v0 negotiation (``graph_walker`` reads the wants, the
        shallow lines and the haves, and acknowledges), then our walk (see
        .walk); None when a shallow request leaves nothing to send."""
        wants = determine_wants(self.get_refs(), depth)
        new_shallow = set(getattr(graph_walker, "shallow", ()))
        unshallow = set(getattr(graph_walker, "unshallow", ()))
        client_shallow = set(getattr(graph_walker, "client_shallow", ()))
        if not wants:
            return None if new_shallow or unshallow else []
        haves = self._common_commits(graph_walker)
        # A commit the client had as shallow and now gets the history of: it
        # has the commit, so the walk stops there; its parents are wanted.
        parents = [p for c in sorted(unshallow) for p in self.store.commit_info(c.decode()).parents]
        ids = objects_to_send(
            self.store,
            [w.decode("ascii") for w in wants] + parents,
            haves,
            [s.decode("ascii") for s in client_shallow | new_shallow],
        )
        return [(ObjectID(i.encode("ascii")), None) for i in ids]

    def _common_commits(self, graph_walker: Any) -> list[str]:
        """Read the client's haves; acknowledge those that are commits we
        have. (dulwich acknowledged any object, and its "ready" check then
        failed on a have that was a tree.)"""
        common: list[str] = []
        have = next(graph_walker)
        while have:
            sha = have.decode("ascii")
            if self.store.object_type(sha) == "commit":
                common.append(sha)
                graph_walker.ack(have)
            have = next(graph_walker)
        return common
