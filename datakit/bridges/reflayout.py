"""The refs part of the metadata layout (spec bridges.md §1.1), as the local
bridge needs it: ``<user>/<repo>/ref/<name…>/head`` = SHA + ``\\n``.

Kept small and on its own so it can give way to the shared layout module
(``datakit.github.tree``) without touching the bridge's logic. Readers are
tolerant (§1.2): anything odd that someone else wrote is read as "not what
we want" and overwritten, never a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from datakit.client import DataKitError, Dir, Kind, Transaction, Tree
from datakit.github.model import Repo

log = logging.getLogger("datakit.bridges.layout")

RefName = tuple[str, ...]


def ref_dir(repo: Repo, name: RefName) -> tuple[str, ...]:
    return (*repo.path, "ref", *name)


def format_ref(repo: Repo, name: RefName, sha: str) -> str:
    """Upstream's ``Ref.pp``: ``{user/repo heads/master[sha]}``."""
    return f"{{{repo} {'/'.join(name)}[{sha}]}}"


def read_refs(tree: Tree | None, repo: Repo, namespace: str) -> dict[RefName, str]:
    """Every ``head`` file below ``<repo>/ref/<namespace>``: name → stripped
    content (whatever it is: a bad SHA simply differs from the wanted one)."""
    found: dict[RefName, str] = {}
    if tree is None:
        return found
    for name in _walk(tree, (*repo.path, "ref", namespace), (namespace,)):
        try:
            data = tree.read_file((*ref_dir(repo, name), "head"))
        except DataKitError:
            data = b""  # not a file: rewritten as one
        found[name] = data.decode("utf-8", "replace").strip()
    return found


def _walk(tree: Tree, path: tuple[str, ...], name: RefName) -> Iterator[RefName]:
    try:
        node = tree.read(path)
    except DataKitError:
        return
    if not isinstance(node, Dir):
        return
    for entry in node.names:
        if entry == "head":
            yield name
            continue
        child = (*path, entry)
        if isinstance(_safe_read(tree, child), Dir):
            yield from _walk(tree, child, (*name, entry))


def _safe_read(tree: Tree, path: tuple[str, ...]) -> object:
    try:
        return tree.read(path)
    except DataKitError:
        return None


def write_ref(t: Transaction, repo: Repo, name: RefName, sha: str) -> None:
    """Set ``ref/<name>/head``, clearing whatever non-directory stands in
    the way (a file where a directory should be, a directory at ``head``)."""
    parent = ref_dir(repo, name)
    for i in range(1, len(parent) + 1):
        stat = t.stat(parent[:i])
        if stat is None:
            t.make_dirs(parent)
            break
        if not _is_dir(stat):
            t.remove(parent[:i])
            t.make_dirs(parent)
            break
    head = (*parent, "head")
    stat = t.stat(head)
    if stat is not None and _is_dir(stat):
        t.remove(head)
    t.create_or_replace_file(head, f"{sha}\n".encode())


def remove_ref(t: Transaction, repo: Repo, name: RefName) -> None:
    """Remove ``ref/<name>/head``; then the ref's directory if no other ref
    lives below it, and the directories above left empty (up to the repo)."""
    parent = ref_dir(repo, name)
    head = (*parent, "head")
    if t.stat(head) is not None:
        t.remove(head)
    if t.stat(parent) is not None and not any(
        _is_dir(t.stat((*parent, e))) for e in t.read_dir(parent)
    ):
        t.remove(parent)
    path = parent[:-1]
    while len(path) > 2 and t.stat(path) is not None and not t.read_dir(path):
        t.remove(path)
        path = path[:-1]


def _is_dir(stat: object) -> bool:
    return getattr(stat, "kind", None) is Kind.DIR


__all__ = ["format_ref", "read_refs", "remove_ref", "write_ref"]
