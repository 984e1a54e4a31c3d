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
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

from datakit.client import (
    AlreadyExists,
    Branch,
    DataKitError,
    Dir,
    File,
    InvalidPath,
    IsADirectory,
    Kind,
    NameTooLong,
    NotADirectory,
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

_complained: dict[tuple[object, ...], None] = {}
_COMPLAINTS_KEPT = 1000
_complaints_lock = threading.Lock()


def _complain(level: int, msg: str, *args: object) -> None:
    """Log a problem with the branch's content once, then at debug level:
    a bridge reads the branch at every step and the junk stays until
    someone removes it."""
    key = (msg, *args)
    with _complaints_lock:  # readers may run in worker threads
        seen = key in _complained
        if not seen:
            if len(_complained) >= _COMPLAINTS_KEPT:
                _complained.pop(next(iter(_complained)))
            _complained[key] = None
    log.log(logging.DEBUG if seen else level, msg, *args)


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


def _listing(tree: Reader, path: Steps) -> tuple[dict[str, bytes], list[str]] | None:
    """The regular files (with their contents) and the subdirectories of a
    directory, or None if ``path`` is not a directory. One read per entry:
    over 9p every request is a round trip, so nothing is read twice."""
    try:
        top = tree.read(path)
    except (DataKitError, ValueError):
        return None
    if not isinstance(top, Dir):
        return None
    files: dict[str, bytes] = {}
    dirs: list[str] = []
    for name in top.names:
        try:
            value = tree.read((*path, name))
        except (DataKitError, ValueError):
            continue
        if isinstance(value, Dir):
            dirs.append(name)
        elif isinstance(value, File):
            files[name] = value.data
    return files, dirs


def _walk(tree: Reader, root: Steps, leaf: str) -> Iterator[tuple[Steps, dict[str, bytes]]]:
    """``(relative path, its files)`` for each directory under ``root``
    (root excluded) that holds a file named ``leaf``: nested ref names and
    status contexts."""
    todo: list[Steps] = [()]
    while todo:
        rel = todo.pop()
        listing = _listing(tree, root + rel)
        if listing is None:
            continue
        files, dirs = listing
        if rel and leaf in files:
            yield rel, files
        if len(rel) < MAX_DEPTH:
            todo.extend((*rel, name) for name in dirs)


def read_ref_heads(tree: Reader, repo: Repo, namespace: str) -> dict[tuple[str, ...], str]:
    """Every ref below ``<repo>/ref/<namespace>`` (a directory holding a
    ``head`` file, at most :data:`MAX_DEPTH` deep): name → the file's
    stripped content, whatever it is (the local bridge rewrites what
    differs). A branch may itself be called ``head``: only a file ends a ref."""
    root = ref_dir(RefId(repo, (namespace,)))
    return {
        (namespace, *rel): files["head"].decode("utf-8", "replace").strip()
        for rel, files in _walk(tree, root, "head")
    }


def _trim(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace").strip()


def read_pr(tree: Reader, ident: PRId) -> PR | None:
    """The PR at ``pr/<n>``, or None if it lacks ``head``, ``state`` or ``owner``."""
    d = pr_dir(ident)
    listing = _listing(tree, d)
    if listing is None:
        return None
    files, dirs = listing
    head, state, owner = (_trim(files.get(f)) for f in ("head", "state", "owner"))
    if not head or state is None or owner is None:
        _complain(logging.INFO, "%s: no head, state or owner; ignored", "/".join(d))
        return None
    try:
        pr_state = PRState(state)
    except ValueError:
        _complain(
            logging.WARNING, "%s/state: %r is not a PR state; read as closed", "/".join(d), state
        )
        pr_state = PRState.CLOSED
    base = _trim(files.get("base"))
    return PR(
        ident.repo,
        ident.number,
        head,
        pr_state,
        _trim(files.get("title")) or "",
        "master" if base is None else base,
        owner,
        _read_comments(tree, (*d, "comments")) if "comments" in dirs else (),
    )


def _read_comments(tree: Reader, d: Steps) -> tuple[Comment, ...]:
    numbered = sorted((n, name) for name in _names(tree, d) if (n := _number(name)) is not None)
    comments = []
    for _, name in numbered:
        listing = _listing(tree, (*d, name))
        files = listing[0] if listing else {}
        ident, user = _trim(files.get("id")), _trim(files.get("user"))
        if ident is None or not _COMMENT_ID.fullmatch(ident) or user is None:
            _complain(
                logging.INFO,
                "%s/%s: comment without a numeric id or a user; ignored",
                "/".join(d),
                name,
            )
            continue
        body = files.get("body", b"").decode("utf-8", "replace")
        comments.append(Comment(int(ident), user, body))
    return tuple(comments)


def read_ref(tree: Reader, ident: RefId) -> Ref | None:
    head = _text(tree, (*ref_dir(ident), "head")) if ident.name else None
    return Ref(ident.repo, ident.name, head) if head else None


def _status_from(ident: StatusId, files: dict[str, bytes]) -> Status | None:
    state = _trim(files.get("state"))
    if state is None or not ident.context:
        return None
    try:
        st = StatusState(state)
    except ValueError:
        where = "/".join(status_dir(ident))
        _complain(
            logging.WARNING, "%s/state: %r is not a status state; read as failure", where, state
        )
        st = StatusState.FAILURE
    return Status(
        ident.repo,
        ident.commit,
        ident.context,
        st,
        _trim(files.get("description")),
        _trim(files.get("target_url")),
    )


def read_status(tree: Reader, ident: StatusId) -> Status | None:
    listing = _listing(tree, status_dir(ident)) if ident.context else None
    return None if listing is None else _status_from(ident, listing[0])


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
            _complain(logging.WARNING, "%s/pr/%s: not a PR number; skipped", "/".join(root), name)
            continue
        pr = read_pr(tree, PRId(repo, number))
        if pr is not None:
            prs.append(pr)
    refs = []
    for ref_name, files in _walk(tree, (*root, "ref"), "head"):
        head = _trim(files["head"])
        if head:
            refs.append(Ref(repo, ref_name, head))
    commits, statuses = [], []
    for sha in _names(tree, (*root, "commit")):
        commit = Commit(repo, sha)
        if not _is_dir(tree, commit_dir(commit)):
            continue
        commits.append(commit)
        for context, files in _walk(tree, (*commit_dir(commit), "status"), "state"):
            status = _status_from(StatusId(repo, sha, context), files)
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
        found.update(RefId(repo, n) for n, _ in _walk(tree, (*root, "ref"), DIRTY))
    return frozenset(found)


# --- following the branch -----------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What a diff between two heads touched: element ids (to re-read with
    :func:`refresh`; a repo id means its ``.monitor`` changed), the
    ``.dirty`` markers that appeared and those that went."""

    ids: frozenset[ElementId] = field(default_factory=frozenset)
    dirty: frozenset[Repo | PRId | RefId] = field(default_factory=frozenset)
    undirty: frozenset[Repo | PRId | RefId] = field(default_factory=frozenset)


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
    unmarks: set[Repo | PRId | RefId] = set()
    for path, present in touched:
        ident, is_dirty = id_of_path(path)
        if ident is None:
            continue
        if not is_dirty:
            ids.add(ident)
            if isinstance(ident, StatusId):
                # The commit's directory comes and goes with its statuses
                # (and holds a commit even when no status there is valid).
                ids.add(Commit(ident.repo, ident.commit))
        elif isinstance(ident, Repo | PRId | RefId):
            (marks if present else unmarks).add(ident)
    return Changes(frozenset(ids), frozenset(marks), frozenset(unmarks))


@dataclass(frozen=True)
class View:
    """What a head of the branch holds, as the GitHub bridge needs it: the
    snapshot of the monitored repos, which repos those are, and the
    ``.dirty`` markers (in any repo directory)."""

    head: DKCommit | None = None
    snapshot: Snapshot = field(default_factory=Snapshot)
    monitored: frozenset[Repo] = frozenset()
    dirty: frozenset[Repo | PRId | RefId] = frozenset()


def view(head: DKCommit | None, previous: View | None = None) -> View:
    """The view of ``head``, computed from ``previous`` when given: only the
    paths the commit diff names are read again. Over 9p a full read costs a
    few round trips per file (seconds for a repository with a few hundred
    PRs, refs and statuses); following the branch costs one diff plus what
    changed. ``view(new, view(old)) == view(new)``."""
    if head is None:
        return View()
    if previous is not None and previous.head == head:
        return previous
    tree = head.tree()
    if previous is None or previous.head is None:
        watched = frozenset(monitored(tree))
        return View(head, read_snapshot(tree, watched), watched, dirty(tree))
    changes = changed_ids(previous.head, head)
    repos = set(previous.monitored)
    for ident in changes.ids:
        if isinstance(ident, Repo):
            if _raw(tree, monitor_file(ident)) is None:
                repos.discard(ident)
            else:
                repos.add(ident)
    snapshot = refresh(tree, previous.snapshot, changes.ids, repos)
    # A marker counts only as a file, as in a full read (a symlink named
    # .dirty is junk, and a marker can turn into one).
    touched = changes.dirty | changes.undirty
    present = {m for m in touched if _raw(tree, dirty_file(m)) is not None}
    marks = (previous.dirty - touched) | present
    return View(head, snapshot, frozenset(repos), marks)


# --- writing ------------------------------------------------------------------


class _Writer:
    """A transaction plus what this write already knows of its tree: the
    directories that exist, and those it created (empty but for what it
    put there). Over 9p every stat is a round trip, and a naive ``mkdir -p``
    plus a stat per file costs about ten per file written."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.dirs: set[Steps] = {()}
        self.fresh: set[Steps] = set()

    def ensure_dir(self, path: Steps) -> None:
        """``mkdir -p`` that replaces a file in the way (someone else's junk)."""
        if path in self.dirs:
            return
        parent = path[:-1]
        self.ensure_dir(parent)
        if parent in self.fresh:
            try:
                self.tx.create_dir(path)
            except (AlreadyExists, NotADirectory, IsADirectory):
                self._replace_with_dir(path)
        else:
            self._replace_with_dir(path)
        self.dirs.add(path)

    def _replace_with_dir(self, path: Steps) -> None:
        st = self.tx.stat(path)
        if st is not None and st.kind is Kind.DIR:
            return
        if st is not None:
            self.tx.remove(path)
        self.tx.create_dir(path)
        self.fresh.add(path)

    def put(self, path: Steps, data: bytes) -> None:
        """Create or replace a regular file (a directory in the way goes)."""
        self.ensure_dir(path[:-1])
        if path[:-1] not in self.fresh:
            st = self.tx.stat(path)
            if st is not None and st.kind is Kind.DIR:
                self.drop(path)
        try:
            self.tx.create_file(path, data)
        except IsADirectory:
            self.drop(path)
            self.tx.create_file(path, data)

    def drop(self, path: Steps) -> bool:
        """Remove whatever is at ``path``; False if nothing was there."""
        if self.tx.stat(path) is None:
            return False
        self.tx.remove(path)
        n = len(path)
        self.dirs = {d for d in self.dirs if d[:n] != path}
        self.fresh = {d for d in self.fresh if d[:n] != path}
        return True


def _bytes(text: str) -> bytes:
    # A lone surrogate (JSON allows "\ud800") must not crash a writer.
    return text.encode("utf-8", "replace")


def _line(text: str) -> bytes:
    return _bytes(text) + b"\n"


def write_pr(tx: Transaction, pr: PR, old: PR | None = None) -> None:
    """Write ``pr`` (only the files that differ from ``old``); the comments
    directory is rewritten whole when the comments changed."""
    _write_pr(_Writer(tx), pr, old)


def _write_pr(w: _Writer, pr: PR, old: PR | None) -> None:
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
            w.put((*d, name), _line(values[name]))
    if old is None or old.comments != pr.comments:
        w.drop((*d, "comments"))
        for i, c in enumerate(pr.comments):
            w.put((*d, "comments", str(i), "id"), _line(str(c.id)))
            w.put((*d, "comments", str(i), "user"), _line(c.user))
            w.put((*d, "comments", str(i), "body"), _bytes(c.body))


def write_ref(tx: Transaction, ref: Ref) -> None:
    _Writer(tx).put((*ref_dir(ref.id), "head"), _line(ref.head))


def write_status(tx: Transaction, status: Status, old: Status | None = None) -> None:
    """Write a status the way the bridge and clients do (§1.3): ``state``,
    and ``description``/``target_url`` when set (removed when None)."""
    _write_status(_Writer(tx), status, old)


def _write_status(w: _Writer, status: Status, old: Status | None) -> None:
    # Context `ci` keeps its state in status/ci/state; context `ci/state`
    # would need status/ci/state to be a directory. Either write would undo
    # the other on every step (an endless commit loop), so a context whose
    # later components name a status file cannot be stored.
    if any(part in _STATUS_FIELDS for part in status.context[1:]):
        raise InvalidPath(
            f"context component named {', '.join(_STATUS_FIELDS)} would collide "
            "with the files of a shorter context"
        )
    d = status_dir(status.id)
    if old is None or old.state != status.state:
        w.put((*d, "state"), _line(str(status.state)))
    for name, value in (
        ("description", None if status.description is None else status.description.strip()),
        ("target_url", status.target_url),
    ):
        if old is not None and getattr(old, name) == getattr(status, name):
            continue
        if value is None:
            w.drop((*d, name))
        else:
            w.put((*d, name), _line(value))


def remove_element(tx: Transaction, ident: ElementId) -> bool:
    """Remove one element's files; False if there were none. A ref or a
    status keeps its subdirectories (nested names and contexts); directories
    left empty vanish at commit (Git stores none)."""
    return _remove_element(_Writer(tx), ident)


def _remove_element(w: _Writer, ident: ElementId) -> bool:
    if isinstance(ident, PRId):
        return w.drop(pr_dir(ident))
    if isinstance(ident, RefId):
        return w.drop((*ref_dir(ident), "head"))
    if isinstance(ident, StatusId):
        dropped = [w.drop((*status_dir(ident), f)) for f in _STATUS_FIELDS]
        return any(dropped)
    if isinstance(ident, Commit):
        return w.drop(commit_dir(ident))
    return False  # a repo: its elements go one by one; .monitor is not ours


def write_monitor(tx: Transaction, repo: Repo) -> None:
    """Start monitoring ``repo`` (``-r``; the bridge commits it with the
    message ``initial commit``)."""
    if _raw(tx, monitor_file(repo)) != b"":
        _Writer(tx).put(monitor_file(repo), b"")


def write_readme(tx: Transaction) -> None:
    """The first commit of an empty ``github-metadata`` (commit it with
    :data:`README_MESSAGE`)."""
    _Writer(tx).put((README,), README_CONTENT)


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
    _Writer(tx).put(dirty_file(ident), b"")


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
    w = _Writer(tx)
    removed: list[ElementId] = []
    for ident in diff.sorted_removals():
        if isinstance(ident, Repo):
            continue
        done = _guarded(ident, partial(_remove_element, w, ident))
        if done or (done is not None and not isinstance(ident, Commit)):
            removed.append(ident)
    updated: list[Element] = []
    for element in diff.sorted_updates():
        if not isinstance(element, PR | Ref | Status):
            continue
        if _guarded(element, partial(_write_element, w, element, old)) is not None:
            updated.append(element)
    cleaned = tuple(ident for ident in sorted(set(clean), key=id_key) if w.drop(dirty_file(ident)))
    return Summary(tuple(updated), tuple(removed), cleaned, _changed_paths(tx))


def _write_element(w: _Writer, element: PR | Ref | Status, old: Snapshot) -> bool:
    if isinstance(element, PR):
        _write_pr(w, element, old.pr(element.id))
    elif isinstance(element, Ref):
        w.put((*ref_dir(element.id), "head"), _line(element.head))
    else:
        _write_status(w, element, old.status(element.id))
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
    "View",
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
    "view",
    "write",
    "write_monitor",
    "write_readme",
]
