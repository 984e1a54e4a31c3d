"""Which objects a fetch must send: everything the wanted commits reach,
less what the client's commits reach.

dulwich's MissingObjectFinder does the same walk through ShaFile objects,
parsing and re-hashing every commit and tree it meets; profiled on a clone
of 10,000 commits that was a third of the server's time. This walk uses the
store's parsed-commit cache and reads tree entries straight from the raw
bodies, and never hashes anything.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from datakit.store import Store

_TREE_MODES = (b"40000", b"040000")  # the second: zero-padded, as old tools wrote
_GITLINK_MODE = b"160000"  # a submodule's commit: not in this repository


class Corrupt(Exception):
    """An object the walk needs is missing or malformed."""


def objects_to_send(
    store: Store,
    wants: Iterable[str],
    haves: Iterable[str],
    shallow: Iterable[str] = (),
) -> list[str]:
    """Ids (hex) of the objects to send, commits first.

    ``haves``: commits the client has (with their whole history, except
    past ``shallow``: commits whose parents the client does not have and
    must not be sent)."""
    shallow = set(shallow)
    have_commits = [h for h in haves if store.object_type(h) == "commit"]
    theirs = _ancestors(store, have_commits, shallow)
    want_commits: list[str] = []
    send: list[str] = []
    for want in wants:
        kind = store.object_type(want)
        if kind is None:
            raise Corrupt(f"object {want} is missing")
        (want_commits if kind == "commit" else send).append(want)
    commits, boundary = _walk_commits(store, want_commits, theirs, shallow)
    # What the client's commits at the boundary hold is not sent again.
    done: set[str] = set()
    for commit in boundary:
        _tree_objects(store, store.commit_info(commit).tree, done, None)
    for commit in commits:
        send.append(commit)
    for commit in commits:
        _tree_objects(store, store.commit_info(commit).tree, done, send)
    return send


def _parents(store: Store, commit: str) -> tuple[str, ...]:
    try:
        return store.commit_info(commit).parents
    except Exception as exc:  # NotFound, or a body that does not parse
        raise Corrupt(f"commit {commit} is missing or malformed") from exc


def _ancestors(store: Store, heads: list[str], shallow: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = deque(heads)
    while todo:
        commit = todo.popleft()
        if commit in seen:
            continue
        seen.add(commit)
        if commit not in shallow:
            todo.extend(_parents(store, commit))
    return seen


def _walk_commits(
    store: Store, heads: list[str], theirs: set[str], shallow: set[str]
) -> tuple[list[str], set[str]]:
    """Commits reachable from ``heads`` and not in ``theirs`` (newest
    first, as walked), and the commits of ``theirs`` met on the way."""
    commits: list[str] = []
    seen: set[str] = set()
    boundary: set[str] = set()
    todo = deque(heads)
    while todo:
        commit = todo.popleft()
        if commit in theirs:
            boundary.add(commit)
            continue
        if commit in seen:
            continue
        seen.add(commit)
        commits.append(commit)
        if commit not in shallow:
            todo.extend(_parents(store, commit))
    return commits, boundary


def _tree_objects(store: Store, tree: str, done: set[str], out: list[str] | None) -> None:
    """Add ``tree`` and what it holds, less ``done``, to ``done`` (and ``out``)."""
    if tree in done:
        return
    done.add(tree)
    if out is not None:
        out.append(tree)
    todo = [tree]
    while todo:
        found = store.raw_object(todo.pop())
        if found is None:
            raise Corrupt(f"tree {tree} or one of its subtrees is missing")
        for is_tree, sha in _entries(found[1]):
            if sha in done:
                continue
            done.add(sha)
            if out is not None:
                out.append(sha)
            if is_tree:
                todo.append(sha)


def _entries(raw: bytes) -> Iterator[tuple[bool, str]]:
    """(is a tree, id) of each entry of a raw tree body, gitlinks left out."""
    i, end = 0, len(raw)
    try:
        while i < end:
            space = raw.index(b" ", i)
            nul = raw.index(b"\0", space)
            mode = raw[i:space]
            sha = raw[nul + 1 : nul + 21]
            i = nul + 21
            if len(sha) != 20:
                raise ValueError("truncated entry")
            if mode == _GITLINK_MODE:
                continue
            yield mode in _TREE_MODES, sha.hex()
    except ValueError as exc:
        raise Corrupt(f"malformed tree: {exc}") from exc
