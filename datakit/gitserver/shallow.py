"""Shallow boundaries: which commits a client asking for ``depth`` commits
gets, and where its history is cut.

One breadth-first walk from all the heads together, keeping each commit's
smallest depth, so the work is linear in the history whatever the number
of heads. (dulwich's find_shallow walks each head on its own and revisits a
commit at every new depth: 1,500 shallow heads over 3,000 commits took 9 s
and 440 MiB in review.)
"""

from __future__ import annotations

from collections.abc import Iterable

from dulwich.errors import GitProtocolError

from datakit.store import Store


def boundary(store: Store, heads: Iterable[str], depth: int) -> tuple[set[str], set[str]]:
    """(shallow, kept): ``kept`` are the commits less than ``depth`` from a
    head (a head is at depth 1), ``shallow`` those at exactly ``depth``:
    sent, but not their parents. Heads that are not commits are ignored."""
    if depth < 1:
        raise GitProtocolError(f"deepen {depth}: the depth must be a positive number")
    level = sorted({h for h in heads if store.object_type(h) == "commit"})
    seen = set(level)
    kept: set[str] = set()
    for _ in range(depth - 1):
        if not level:
            break
        kept.update(level)
        parents = []
        for commit in level:
            for parent in store.commit_info(commit).parents:
                if parent not in seen:
                    seen.add(parent)
                    parents.append(parent)
        level = parents
    return set(level), kept
