"""The ``github-metadata`` layout (spec/bridges.md §1): reading it into a
:class:`~datakit.github.model.Snapshot` and writing snapshots into it.

This file is the one place that knows the layout; both bridges and the CI
go through it. It uses only the public client API (a ``Tree`` or an open
``Transaction`` to read, a ``Transaction`` to write), so it works the same
against a server and directly on a Git repository.

Reading is tolerant (§1.2): the branch is written by anyone, so nothing in
it may make a reader raise. Missing or malformed pieces are skipped (with a
log line where a person made a mistake), never fatal. Transport failures
(``OSError``) still propagate: those are not about the content.

Writing is byte-exact (§1.1) and minimal: :func:`write` touches only what
differs between the old and the new snapshot, so a step that changes
nothing leaves the tree identical and :func:`is_empty` says not to commit
(an empty commit wakes every watcher, including the bridge itself: #397).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

from datakit.client import (
    Branch,
    DataKitError,
    Dir,
    File,
    InvalidPath,
    Kind,
    NameTooLong,
    Removed,
    Transaction,
    Tree,
)
from datakit.client import Commit as DKCommit
from datakit.github.model import (
    NAME_RE,
    PR,
    Comment,
    Commit,
    Element,
    ElementId,
    PRId,
    PRState,
    Ref,
    RefId,
    Repo,
    Snapshot,
    Status,
    StatusId,
    StatusState,
    element_key,
    id_key,
    repo_of,
)

log = logging.getLogger("datakit.github")

Reader = Tree | Transaction
Steps = tuple[str, ...]

BRANCH = "github-metadata"
README = "README.md"
README_CONTENT = b"### DataKit -- GitHub bridge\n"
README_MESSAGE = "Initial commit"
MONITOR = ".monitor"
DIRTY = ".dirty"
CLEANUP_MESSAGE = "Cleaning up .dirty files"
MAX_DEPTH = 64
"""How deep ref names and status contexts are followed (a bound on a walk
through a tree anyone can write)."""

_COMMENT_ID = re.compile(r"-?[0-9]+")
_PR_FIELDS = ("head", "state", "title", "base", "owner")
_STATUS_FIELDS = ("state", "description", "target_url")


# --- paths --------------------------------------------------------------------


def repo_dir(repo: Repo) -> Steps:
    return (repo.user, repo.name)


def monitor_file(repo: Repo) -> Steps:
    return (repo.user, repo.name, MONITOR)


def pr_dir(ident: PRId) -> Steps:
    return (*repo_dir(ident.repo), "pr", str(ident.number))


def ref_dir(ident: RefId) -> Steps:
    return (*repo_dir(ident.repo), "ref", *ident.name)


def commit_dir(commit: Commit) -> Steps:
    return (*repo_dir(commit.repo), "commit", commit.sha)


def status_dir(ident: StatusId) -> Steps:
    return (*repo_dir(ident.repo), "commit", ident.commit, "status", *ident.context)


def dirty_file(ident: Repo | PRId | RefId) -> Steps:
    """Where a client asks for a re-import of a repo, a PR or a ref."""
    if isinstance(ident, Repo):
        return (*repo_dir(ident), DIRTY)
    if isinstance(ident, PRId):
        return (*pr_dir(ident), DIRTY)
    return (*ref_dir(ident), DIRTY)


# --- tolerant reading ---------------------------------------------------------


def _names(tree: Reader, path: Steps) -> list[str]:
    """A directory's names, or [] if it is missing or not a directory."""
    try:
        return tree.read_dir(path)
    except (DataKitError, ValueError):
        return []


def _raw(tree: Reader, path: Steps) -> bytes | None:
    try:
        return tree.read_file(path)
    except (DataKitError, ValueError):
        return None


def _text(tree: Reader, path: Steps) -> str | None:
    """A file's text with surrounding whitespace trimmed (§1.2), or None."""
    data = _raw(tree, path)
    return None if data is None else data.decode("utf-8", "replace").strip()


def _is_dir(tree: Reader, path: Steps) -> bool:
    try:
        st = tree.stat(path)
    except (DataKitError, ValueError):
        return False
    return st is not None and st.kind is Kind.DIR


def _number(name: str) -> int | None:
    """A canonical non-negative decimal (``3``, not ``03`` or ``+3``)."""
    if name.isascii() and name.isdigit() and str(int(name)) == name:
        return int(name)
    return None


def repo_dirs(tree: Reader) -> set[Repo]:
    """Every ``<user>/<repo>`` directory, monitored or not (the local bridge
    writes refs without ``.monitor``)."""
    found = set()
    for user in _names(tree, ()):
        if not NAME_RE.fullmatch(user) or user in (".", ".."):
            continue
        for name in _names(tree, (user,)):
            if NAME_RE.fullmatch(name) and name not in (".", "..") and _is_dir(tree, (user, name)):
                found.add(Repo(user, name))
    return found


def monitored(tree: Reader) -> set[Repo]:
    """The repositories with a ``.monitor`` file."""
    return {r for r in repo_dirs(tree) if _raw(tree, monitor_file(r)) is not None}


def _walk(tree: Reader, root: Steps, leaf: str) -> Iterator[Steps]:
    """Relative paths of the directories under ``root`` (root excluded) that
    hold a file named ``leaf``: nested ref names and status contexts."""
    todo: list[Steps] = [()]
    while todo:
        rel = todo.pop()
        for name in _names(tree, root + rel):
            child = (*rel, name)
            try:
                value = tree.read(root + child)
            except (DataKitError, ValueError):
                continue
            if isinstance(value, Dir):
                if len(child) <= MAX_DEPTH:
                    todo.append(child)
            elif name == leaf and rel and isinstance(value, File):
                yield rel


def read_pr(tree: Reader, ident: PRId) -> PR | None:
    """The PR at ``pr/<n>``, or None if it lacks ``head``, ``state`` or ``owner``."""
    d = pr_dir(ident)
    head, state, owner = (_text(tree, (*d, f)) for f in ("head", "state", "owner"))
    if not head or state is None or owner is None:
        if _is_dir(tree, d):
            log.info("%s: no head, state or owner; ignored", "/".join(d))
        return None
    try:
        pr_state = PRState(state)
    except ValueError:
        log.warning("%s/state: %r is not a PR state; read as closed", "/".join(d), state)
        pr_state = PRState.CLOSED
    title = _text(tree, (*d, "title"))
    base = _text(tree, (*d, "base"))
    return PR(
        ident.repo,
        ident.number,
        head,
        pr_state,
        title or "",
        "master" if base is None else base,
        owner,
        _read_comments(tree, (*d, "comments")),
    )


def _read_comments(tree: Reader, d: Steps) -> tuple[Comment, ...]:
    numbered = sorted((n, name) for name in _names(tree, d) if (n := _number(name)) is not None)
    comments = []
    for _, name in numbered:
        ident, user = _text(tree, (*d, name, "id")), _text(tree, (*d, name, "user"))
        body = _raw(tree, (*d, name, "body"))
        if ident is None or not _COMMENT_ID.fullmatch(ident) or user is None:
            log.info("%s/%s: comment without a numeric id or a user; ignored", "/".join(d), name)
            continue
        comments.append(Comment(int(ident), user, (body or b"").decode("utf-8", "replace")))
    return tuple(comments)


def read_ref(tree: Reader, ident: RefId) -> Ref | None:
    head = _text(tree, (*ref_dir(ident), "head")) if ident.name else None
    return Ref(ident.repo, ident.name, head) if head else None


def read_status(tree: Reader, ident: StatusId) -> Status | None:
    d = status_dir(ident)
    state = _text(tree, (*d, "state")) if ident.context else None
    if state is None:
        return None
    try:
        st = StatusState(state)
    except ValueError:
        log.warning("%s/state: %r is not a status state; read as failure", "/".join(d), state)
        st = StatusState.FAILURE
    return Status(
        ident.repo,
        ident.commit,
        ident.context,
        st,
        _text(tree, (*d, "description")),
        _text(tree, (*d, "target_url")),
    )


def read_element(tree: Reader, ident: ElementId) -> Element | None:
    """What the tree holds for one id now (None: nothing). A commit exists
    while its directory does; a repo while its ``.monitor`` does."""
    if isinstance(ident, PRId):
        return read_pr(tree, ident)
    if isinstance(ident, RefId):
        return read_ref(tree, ident)
    if isinstance(ident, StatusId):
        return read_status(tree, ident)
    if isinstance(ident, Commit):
        return ident if _is_dir(tree, commit_dir(ident)) else None
    return ident if _raw(tree, monitor_file(ident)) is not None else None


def read_repo(tree: Reader, repo: Repo) -> Snapshot:
    """Everything stored under ``<user>/<repo>``."""
    root = repo_dir(repo)
    prs = []
    for name in _names(tree, (*root, "pr")):
        number = _number(name)
        if number is None:
            log.warning("%s/pr/%s: not a PR number; skipped", "/".join(root), name)
            continue
        pr = read_pr(tree, PRId(repo, number))
        if pr is not None:
            prs.append(pr)
    refs = [
        ref
        for name in _walk(tree, (*root, "ref"), "head")
        if (ref := read_ref(tree, RefId(repo, name))) is not None
    ]
    commits, statuses = [], []
    for sha in _names(tree, (*root, "commit")):
        commit = Commit(repo, sha)
        if not _is_dir(tree, commit_dir(commit)):
            continue
        commits.append(commit)
        for context in _walk(tree, (*commit_dir(commit), "status"), "state"):
            status = read_status(tree, StatusId(repo, sha, context))
            if status is not None:
                statuses.append(status)
    return Snapshot(
        frozenset({repo}),
        frozenset(commits),
        frozenset(prs),
        frozenset(refs),
        frozenset(statuses),
    )


def read_snapshot(tree: Reader, repos: Iterable[Repo] | None = None) -> Snapshot:
    """The snapshot the tree holds for ``repos`` (default: the monitored
    ones, as upstream's bridge reads it; pass :func:`repo_dirs` for all)."""
    chosen = monitored(tree) if repos is None else set(repos)
    elements: list[Element] = []
    for repo in sorted(chosen):
        elements.extend(read_repo(tree, repo).elements())
    return Snapshot.of(elements)


def refresh(
    tree: Reader,
    snapshot: Snapshot,
    ids: Iterable[ElementId],
    repos: Iterable[Repo] | None = None,
) -> Snapshot:
    """``snapshot`` with the elements ``ids`` re-read from ``tree``: how the
    bridge follows the branch from one head to the next without reading
    everything again (pair with :func:`changed_ids`). Only ``repos``
    (default: the monitored ones, as in :func:`read_snapshot`) are kept; a
    repo id re-reads or drops that whole repo (its ``.monitor`` changed).
    So ``refresh(new, read_snapshot(old), changed_ids(old, new).ids)`` is
    ``read_snapshot(new)``."""
    scope = monitored(tree) if repos is None else set(repos)
    present: list[Element] = []
    gone: list[ElementId] = [r for r in snapshot.repos if r not in scope]
    for ident in set(ids):
        repo = repo_of(ident)
        if repo not in scope:
            gone.append(ident)
        elif isinstance(ident, Repo):
            snapshot = snapshot.replace_repo(ident, read_repo(tree, ident))
        elif (element := read_element(tree, ident)) is None:
            gone.append(ident)
        else:
            present.append(element)
    result = snapshot.without(gone).with_elements(present)
    result = result.with_elements(r for r in scope if r not in result.repos)
    # A commit stays while its directory exists or something points at it.
    implied = (
        {pr.head_commit for pr in result.prs}
        | {ref.head_commit for ref in result.refs}
        | {s.on_commit for s in result.statuses}
    )
    stale = [c for c in result.commits if c not in implied and not _is_dir(tree, commit_dir(c))]
    return result.without(stale) if stale else result


def dirty(tree: Reader, repos: Iterable[Repo] | None = None) -> frozenset[Repo | PRId | RefId]:
    """The ``.dirty`` markers: re-import requests for a repo, a PR or a ref
    (default: in every repo directory)."""
    found: set[Repo | PRId | RefId] = set()
    for repo in repo_dirs(tree) if repos is None else repos:
        root = repo_dir(repo)
        if _raw(tree, (*root, DIRTY)) is not None:
            found.add(repo)
        for name in _names(tree, (*root, "pr")):
            number = _number(name)
            if number is not None and _raw(tree, (*root, "pr", name, DIRTY)) is not None:
                found.add(PRId(repo, number))
        found.update(RefId(repo, n) for n in _walk(tree, (*root, "ref"), DIRTY))
    return frozenset(found)


# --- following the branch -----------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What a diff between two heads touched: element ids (to re-read with
    :func:`refresh`) and the ``.dirty`` markers that appeared."""

    ids: frozenset[ElementId] = field(default_factory=frozenset)
    dirty: frozenset[Repo | PRId | RefId] = field(default_factory=frozenset)


def id_of_path(path: Steps) -> tuple[ElementId | None, bool]:
    """``(id, is_dirty_marker)`` for a file path of the layout, ``(None, False)``
    for a path that means nothing (README.md, junk)."""
    if len(path) < 3:
        return None, False
    user, name, *rest = path
    try:
        repo = Repo.parse(f"{user}/{name}")
    except ValueError:
        return None, False
    match rest:
        case [".monitor"]:
            return repo, False
        case [".dirty"]:
            return repo, True
        case ["pr", n, *tail] if (number := _number(n)) is not None and tail:
            return PRId(repo, number), tail == [DIRTY]
        case ["commit", sha, "status", *context, _] if context:
            return StatusId(repo, sha, tuple(context)), False
        case ["commit", sha, *_]:
            return Commit(repo, sha), False
        case ["ref", *ref_name, leaf] if ref_name:
            return RefId(repo, tuple(ref_name)), leaf == DIRTY
    return None, False


def _all_files(tree: Reader, root: Steps = ()) -> Iterator[Steps]:
    for name in _names(tree, root):
        path = (*root, name)
        if _is_dir(tree, path):
            yield from _all_files(tree, path)
        else:
            yield path


def changed_ids(old: DKCommit | None, new: DKCommit) -> Changes:
    """§3.6 step 1: the ids whose files changed from ``old`` to ``new`` (all
    of ``new`` when ``old`` is None), and the ``.dirty`` markers added."""
    if old is None:
        touched = [(p, True) for p in _all_files(new.tree())]
    else:
        touched = [(tuple(d.path.split("/")), not isinstance(d, Removed)) for d in new.diff(old)]
    ids: set[ElementId] = set()
    marks: set[Repo | PRId | RefId] = set()
    for path, present in touched:
        ident, is_dirty = id_of_path(path)
        if ident is None:
            continue
        if not is_dirty:
            ids.add(ident)
        elif present and isinstance(ident, Repo | PRId | RefId):
            marks.add(ident)
    return Changes(frozenset(ids), frozenset(marks))


# --- writing ------------------------------------------------------------------


def _ensure_dir(tx: Transaction, path: Steps) -> None:
    """``mkdir -p`` that replaces a file in the way (someone else's junk)."""
    missing = False
    for i in range(1, len(path) + 1):
        prefix = path[:i]
        if not missing:
            st = tx.stat(prefix)
            if st is not None and st.kind is Kind.DIR:
                continue
            if st is not None:
                tx.remove(prefix)
            missing = True
        tx.create_dir(prefix)


def _put(tx: Transaction, path: Steps, data: bytes) -> None:
    _ensure_dir(tx, path[:-1])
    st = tx.stat(path)
    if st is not None and st.kind is Kind.DIR:
        tx.remove(path)
    tx.create_file(path, data)


def _drop(tx: Transaction, path: Steps) -> bool:
    """Remove whatever is at ``path``; False if nothing was there."""
    if tx.stat(path) is None:
        return False
    tx.remove(path)
    return True


def _bytes(text: str) -> bytes:
    # A lone surrogate (JSON allows "\ud800") must not crash a writer.
    return text.encode("utf-8", "replace")


def _line(text: str) -> bytes:
    return _bytes(text) + b"\n"


def write_pr(tx: Transaction, pr: PR, old: PR | None = None) -> None:
    """Write ``pr`` (only the files that differ from ``old``); the comments
    directory is rewritten whole when the comments changed."""
    d = pr_dir(pr.id)
    values = {
        "head": pr.head,
        "state": str(pr.state),
        "title": pr.title,
        "base": pr.base,
        "owner": pr.owner,
    }
    for name in _PR_FIELDS:
        if old is None or getattr(old, name) != getattr(pr, name):
            _put(tx, (*d, name), _line(values[name]))
    if old is None or old.comments != pr.comments:
        _drop(tx, (*d, "comments"))
        for i, c in enumerate(pr.comments):
            _put(tx, (*d, "comments", str(i), "id"), _line(str(c.id)))
            _put(tx, (*d, "comments", str(i), "user"), _line(c.user))
            _put(tx, (*d, "comments", str(i), "body"), _bytes(c.body))


def write_ref(tx: Transaction, ref: Ref) -> None:
    _put(tx, (*ref_dir(ref.id), "head"), _line(ref.head))


def write_status(tx: Transaction, status: Status, old: Status | None = None) -> None:
    """Write a status the way the bridge and clients do (§1.3): ``state``,
    and ``description``/``target_url`` when set (removed when None)."""
    d = status_dir(status.id)
    if old is None or old.state != status.state:
        _put(tx, (*d, "state"), _line(str(status.state)))
    for name, value in (
        ("description", None if status.description is None else status.description.strip()),
        ("target_url", status.target_url),
    ):
        if old is not None and getattr(old, name) == getattr(status, name):
            continue
        if value is None:
            _drop(tx, (*d, name))
        else:
            _put(tx, (*d, name), _line(value))


def remove_element(tx: Transaction, ident: ElementId) -> bool:
    """Remove one element's files; False if there were none. A ref or a
    status keeps its subdirectories (nested names and contexts); directories
    left empty vanish at commit (Git stores none)."""
    if isinstance(ident, PRId):
        return _drop(tx, pr_dir(ident))
    if isinstance(ident, RefId):
        return _drop(tx, (*ref_dir(ident), "head"))
    if isinstance(ident, StatusId):
        dropped = [_drop(tx, (*status_dir(ident), f)) for f in _STATUS_FIELDS]
        return any(dropped)
    if isinstance(ident, Commit):
        return _drop(tx, commit_dir(ident))
    return False  # a repo: its elements go one by one; .monitor is not ours


def write_monitor(tx: Transaction, repo: Repo) -> None:
    """Start monitoring ``repo`` (``-r``; the bridge commits it with the
    message ``initial commit``)."""
    if _raw(tx, monitor_file(repo)) != b"":
        _put(tx, monitor_file(repo), b"")


def write_readme(tx: Transaction) -> None:
    """The first commit of an empty ``github-metadata`` (commit it with
    :data:`README_MESSAGE`)."""
    _put(tx, (README,), README_CONTENT)


def init_branch(branch: Branch) -> bool:
    """BR-1: give a branch without commits its ``README.md`` commit. False
    if the branch already had a commit."""
    if branch.head() is not None:
        return False
    with branch.transaction() as tx:
        write_readme(tx)
        tx.commit(README_MESSAGE)
    return True


def mark_dirty(tx: Transaction, ident: Repo | PRId | RefId) -> None:
    """Ask the bridge to re-import (what a client does)."""
    _put(tx, dirty_file(ident), b"")


@dataclass(frozen=True)
class Summary:
    """What :func:`write` did: the items for the commit message, the
    ``.dirty`` markers it removed, and the files that differ from the
    transaction's parent (empty: do not commit)."""

    updated: tuple[Element, ...] = ()
    removed: tuple[ElementId, ...] = ()
    cleaned: tuple[Repo | PRId | RefId, ...] = ()
    paths: tuple[str, ...] = ()


def write(
    tx: Transaction,
    old: Snapshot,
    new: Snapshot,
    clean: Iterable[Repo | PRId | RefId] = (),
) -> Summary:
    """Make the tree that holds ``old`` hold ``new``, touching only the
    differences, and remove the consumed ``.dirty`` markers ``clean``.

    ``old`` must be what the transaction's tree holds for the repositories
    concerned (:func:`read_snapshot` of it, or a snapshot kept up to date
    with :func:`refresh`). Repos are not written (``.monitor`` belongs to
    users, see :func:`write_monitor`), nor are commits without statuses
    (Git keeps no empty directories)."""
    diff = new.diff(old)
    removed: list[ElementId] = []
    for ident in diff.sorted_removals():
        if isinstance(ident, Repo):
            continue
        done = _guarded(ident, partial(remove_element, tx, ident))
        if done or (done is not None and not isinstance(ident, Commit)):
            removed.append(ident)
    updated: list[Element] = []
    for element in diff.sorted_updates():
        if not isinstance(element, PR | Ref | Status):
            continue
        if _guarded(element, partial(_write_element, tx, element, old)) is not None:
            updated.append(element)
    cleaned = tuple(
        ident for ident in sorted(set(clean), key=id_key) if _drop(tx, dirty_file(ident))
    )
    return Summary(tuple(updated), tuple(removed), cleaned, _changed_paths(tx))


def _write_element(tx: Transaction, element: PR | Ref | Status, old: Snapshot) -> bool:
    if isinstance(element, PR):
        write_pr(tx, element, old.pr(element.id))
    elif isinstance(element, Ref):
        write_ref(tx, element)
    else:
        write_status(tx, element, old.status(element.id))
    return True


def _guarded(item: Element | ElementId, action: Callable[[], bool]) -> bool | None:
    """Run one element's writes; None (and a log line) if its names cannot
    be stored (a status context ``a/../b`` from GitHub, a 300-byte name).
    Such a name fails on the element's first path, before anything of it
    is written, so the rest of the step goes on."""
    try:
        return action()
    except (InvalidPath, NameTooLong, UnicodeError) as e:
        log.warning("%s: cannot be stored in the branch (%s); skipped", item, e)
        return None


def _changed_paths(tx: Transaction) -> tuple[str, ...]:
    parents = tx.parents()
    if parents:
        return tuple(d.path for d in tx.diff(parents[0]))
    return tuple("/".join(p) for p in _all_files(tx))


def is_empty(summary: Summary) -> bool:
    """True when committing would make an empty commit: abort instead."""
    return not summary.paths


def _item(item: Element | ElementId) -> str:
    return str(item)


def commit_message(summary: Summary) -> str:
    """§3.6 step 6: ``1 item updated``, ``N items updated``, ``1 item
    removed``, ``N items removed`` or ``N items modified``, a blank line and
    the items; ``Cleaning up .dirty files`` when only markers went."""
    ups = [_item(e) for e in sorted(summary.updated, key=element_key)]
    rms = [_item(i) for i in sorted(summary.removed, key=id_key)]
    if not ups and not rms:
        return CLEANUP_MESSAGE
    if not rms:
        head = "1 item updated" if len(ups) == 1 else f"{len(ups)} items updated"
        return head + "\n\n" + "\n".join(ups)
    if not ups:
        head = "1 item removed" if len(rms) == 1 else f"{len(rms)} items removed"
        return head + "\n\n" + "\n".join(rms)
    return (
        f"{len(ups) + len(rms)} items modified\n\nUpdated\n"
        + "\n".join(f"  {u}" for u in ups)
        + "\n\nRemoved\n"
        + "\n".join(f"  {r}" for r in rms)
    )


__all__ = [
    "BRANCH",
    "CLEANUP_MESSAGE",
    "README_CONTENT",
    "README_MESSAGE",
    "Changes",
    "Summary",
    "changed_ids",
    "commit_message",
    "dirty",
    "init_branch",
    "is_empty",
    "mark_dirty",
    "monitored",
    "read_snapshot",
    "refresh",
    "repo_dirs",
    "write",
    "write_monitor",
    "write_readme",
]
