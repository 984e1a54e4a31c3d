"""The refs part of the metadata layout (spec bridges.md §1.1) as the local
bridge uses it: ``<user>/<repo>/ref/<name…>/head`` = SHA + ``\\n``.

Paths and writing come from the shared layout module
(:mod:`datakit.github.tree`); reading walks only ``ref/<namespace>``
(rather than :func:`~datakit.github.tree.read_repo`, which also reads every
PR and every commit's statuses: a CI's statuses pile up, the refs do not).
Readers are tolerant (§1.2): anything odd that someone else wrote is read
as "not what we want" and overwritten, never a crash.
"""

from __future__ import annotations

import logging

from datakit.client import DataKitError, Kind, Transaction, Tree
from datakit.github import tree as layout
from datakit.github.model import Ref, RefId, Repo

log = logging.getLogger("datakit.bridges.layout")

RefName = tuple[str, ...]


def format_ref(repo: Repo, name: RefName, sha: str) -> str:
    """Upstream's ``Ref.pp``: ``{user/repo heads/master[sha]}``."""
    return f"{{{repo} {'/'.join(name)}[{sha}]}}"


def read_refs(tree: Tree | None, repo: Repo, namespace: str) -> dict[RefName, str]:
    """Every ref stored below ``<repo>/ref/<namespace>``: name → stripped
    content (whatever it is: a bad SHA simply differs from the wanted one)."""
    return {} if tree is None else layout.read_ref_heads(tree, repo, namespace)


def _is_dir(tree: Tree | Transaction, path: tuple[str, ...]) -> bool:
    try:
        st = tree.stat(path)
    except (DataKitError, ValueError):
        return False
    return st is not None and st.kind is Kind.DIR


def write_ref(t: Transaction, repo: Repo, name: RefName, sha: str) -> None:
    """Set ``ref/<name>/head`` (the shared writer clears whatever stands in
    the way: a file where a directory goes, a directory at ``head``)."""
    layout.write_ref(t, Ref(repo, name, sha))


def remove_ref(t: Transaction, repo: Repo, name: RefName) -> None:
    """Remove ``ref/<name>/head``; then the ref's directory if no other ref
    lives below it (its ``.dirty`` goes with it), and the directories above
    left empty, up to the repository's."""
    ident = RefId(repo, name)
    layout.remove_element(t, ident)
    parent = layout.ref_dir(ident)
    if _is_dir(t, parent) and not any(_is_dir(t, (*parent, e)) for e in t.read_dir(parent)):
        t.remove(parent)
    path = parent[:-1]
    while len(path) > 2 and _is_dir(t, path) and not t.read_dir(path):
        t.remove(path)
        path = path[:-1]


__all__ = ["format_ref", "read_refs", "remove_ref", "write_ref"]
