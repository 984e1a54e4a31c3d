"""The Git backend: the client API directly on a Git repository on disk,
in-process, through :mod:`datakit.store` (the same store the server uses, so
merges, conflict files and commit integration are the server's own code).

The store is single-threaded, so every call into it holds the connection's
lock; watches wait on a condition signalled by the store's branch listener
and poll the refs now and then to notice commits made by other processes
(a server on the same repository, ``git`` itself).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from datakit import store as st
from datakit.client.api import (
    Branch,
    Commit,
    CommitLike,
    Connection,
    Transaction,
    Tree,
    aborted,
    check_branch_name,
    check_new_name,
    check_remote_branch,
    parse_id,
)
from datakit.client.errors import (
    AlreadyExists,
    BackendError,
    Conflict,
    ConflictsRemain,
    DataKitError,
    DoesNotExist,
    FetchFailed,
    InvalidBranchName,
    InvalidHash,
    InvalidName,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotAFile,
    NotFastForward,
)
from datakit.client.values import (
    Cancel,
    Diff,
    Dir,
    Exec,
    File,
    Kind,
    Link,
    MergeInputs,
    MergeResult,
    PathLike,
    Stat,
    Steps,
    Value,
    path_key,
    path_str,
    to_diffs,
    to_steps,
)
from datakit.formats import convert_kind, render_message

DEFAULT_AUTHOR = "datakit <datakit@mobyproject.org>"
DEFAULT_EMAIL = "datakit@mobyproject.org"
POLL_SECONDS = 0.05
"""How often a watch checks its timeout and cancel flag."""
REFS_POLL_SECONDS = 0.2
"""How often a watch looks for ref changes made by other processes."""


def translate(exc: st.StoreError) -> DataKitError:
    """A store error as the client error the 9p backend raises for the same
    situation (the server reports these very errors over 9p)."""
    if isinstance(exc, st.NotFound):
        return DoesNotExist()
    if isinstance(exc, st.AlreadyExists):
        return AlreadyExists()
    if isinstance(exc, st.IsADirectory):
        return IsADirectory()
    if isinstance(exc, st.NotADirectory):
        return NotADirectory()
    if isinstance(exc, st.MergeConflict):
        return Conflict(str(exc))
    if isinstance(exc, st.ConflictsRemain):
        return ConflictsRemain()
    if isinstance(exc, st.NotFastForward):
        return NotFastForward()
    if isinstance(exc, st.InvalidHash):
        return InvalidHash(str(exc))
    if isinstance(exc, st.InvalidBranchName):
        return InvalidBranchName(str(exc))
    if isinstance(exc, st.FetchError):
        return FetchFailed(str(exc))
    if isinstance(exc, st.ReadOnlyEntry):
        return BackendError(str(exc), errno.EROFS)  # as the server's EROFS reply
    if isinstance(exc, st.InvalidName):
        return InvalidName(str(exc))
    if isinstance(exc, st.NameTooLong):
        return NameTooLong(str(exc))
    if isinstance(exc, st.InvalidContent):
        return BackendError(str(exc), errno.EINVAL)  # as the server's EINVAL reply
    if isinstance(exc, st.CorruptTree):
        return BackendError(str(exc), errno.EIO)  # what the server reports
    return BackendError(str(exc))


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except st.StoreError as exc:
        raise translate(exc) from None


def parse_author(author: str) -> bytes:
    """``Name <email>``; a bare name gets the default e-mail address."""
    author = author.strip()
    if "<" in author and author.endswith(">"):
        name, _, email = author[:-1].partition("<")
        return f"{name.strip()} <{email.strip()}>".encode()
    return f"{author} <{DEFAULT_EMAIL}>".encode()


def _open_store(
    path: str,
    *,
    head: str | None,
    bare: bool,
    compression: int | None,
    git_dir: str | None,
    cache_size: int | None = None,
) -> st.Store:
    """Open the repository, creating it if needed (bare, or with a work tree
    at ``path``), then apply the HEAD and compression options."""
    limits = st.Limits() if cache_size is None else st.Limits(cache_size=cache_size)
    with _store_errors():
        store = st.Store.open(
            git_dir if git_dir is not None else path,
            work_tree=None if bare else path,
            limits=limits,
        )
    try:
        if head is not None:
            ref = head if head.startswith("refs/") else f"refs/heads/{check_branch_name(head)}"
            store.set_default_branch(ref)
        if compression is not None:
            store.set_compression(compression)
    except BaseException:
        store.close()
        raise
    return store


class GitConnection(Connection):
    """``connect("/path/to/repo", author=..., head=..., bare=..., ...)``.

    Options: ``author`` (``"Name <email>"``, default
    ``datakit <datakit@mobyproject.org>``), ``head`` (the ref HEAD should
    designate: ``"master"`` or ``"refs/heads/master"``), ``bare`` (when the
    repository is created: bare, the default, or with a work tree, which is
    never touched), ``compression`` (zlib level recorded in the repository's
    config and used for the objects written), ``git_dir`` (the Git directory, if not ``path`` or
    ``path/.git``), ``cache_size`` (bytes of file contents kept in memory
    for the next reader; 64 MiB by default, as the server's
    ``--cache-size``: a program that reads each file once can use less).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        author: str = DEFAULT_AUTHOR,
        head: str | None = None,
        bare: bool = True,
        compression: int | None = None,
        git_dir: str | os.PathLike[str] | None = None,
        cache_size: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.author = parse_author(author)
        self.store = _open_store(
            self.path,
            head=head,
            bare=bare,
            compression=compression,
            git_dir=os.fspath(git_dir) if git_dir is not None else None,
            cache_size=cache_size,
        )
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._version = 0
        self._known: set[str] = set()
        self._watching = False
        self._last_poll = 0.0
        self._closed = False

    def close(self) -> None:
        with self.lock:
            if not self._closed:
                self._closed = True
                self.store.close()

    # -- Connection -------------------------------------------------------------

    def branches(self) -> list[str]:
        with self.lock:
            names = {b for b in self.store.branches() if "/" not in b}
            return sorted(names | self._known)

    def branch(self, name: str) -> GitBranch:
        check_branch_name(name)
        with self.lock:
            self._known.add(name)
        return GitBranch(self, name)

    def remove_branch(self, name: str) -> None:
        check_branch_name(name)
        with self.lock:
            self._known.discard(name)
            self.store.delete_branch(name)

    def commit(self, id: str) -> GitCommit:
        sha = parse_id(id)
        with self.lock, _store_errors():
            info = self.store.commit_info(sha)
        return GitCommit(self, info)

    def commit_of(self, sha: str) -> GitCommit:
        with self.lock:
            return GitCommit(self, self.store.commit_info(sha))

    def tree(self, id: str) -> GitTree:
        sha = parse_id(id.removeprefix("D-"), "tree")
        with self.lock, _store_errors():
            return GitTree(self, self.store.tree(sha))

    def fetch(self, url: str, branch: str) -> GitCommit:
        check_remote_branch(branch)
        with self.lock, _store_errors():
            # The operator is the user here: every scheme is allowed.
            sha = self.store.fetch(url, branch, policy=st.ALLOW_ALL)
            return self.commit_of(sha)

    # -- change notification ---------------------------------------------------------

    def _on_branch_change(self, name: str, head: str | None) -> None:
        # Called by the store with self.lock held (every store call holds it).
        self._version += 1
        self._changed.notify_all()

    def watch_version(self) -> int:
        with self.lock:
            if not self._watching:
                self._watching = True
                self.store.add_listener(self._on_branch_change)
            return self._version

    def wait_change(self, seen: int, deadline: float | None, cancel: Cancel | None) -> bool:
        """Block until a branch changed since version ``seen``; False if the
        wait timed out or was cancelled first."""
        with self._changed:
            if aborted(deadline, cancel):
                return False
            while self._version == seen:
                if aborted(deadline, cancel):
                    return False
                self._changed.wait(POLL_SECONDS)
                now = time.monotonic()
                if now - self._last_poll >= REFS_POLL_SECONDS:
                    self._last_poll = now
                    self.store.poll()  # other processes' commits
            return True


class GitTree(Tree):
    def __init__(self, conn: GitConnection, view: st.TreeView) -> None:
        self._conn = conn
        self._view = view

    def __repr__(self) -> str:
        return f"<GitTree {self._view.sha}>"

    def _entry(self, steps: Steps) -> st.Entry | None:
        return self._view.lookup(steps)

    def read(self, path: PathLike) -> Value:
        steps = to_steps(path)
        with self._conn.lock, _store_errors():
            entry = self._entry(steps)
            if entry is None:
                raise DoesNotExist()
            if entry.kind is st.Kind.DIR:
                return Dir(tuple(name for name, _ in self._view.listdir(steps)))
            data = self._conn.store.content(entry)
        if entry.kind is st.Kind.LINK:
            return Link(data.decode("utf-8", "surrogateescape"))
        return File(data)

    def _chunks(self, path: PathLike, chunk_size: int) -> Iterator[bytes]:
        steps = to_steps(path)
        with self._conn.lock, _store_errors():
            entry = self._entry(steps)
            if entry is None:
                raise DoesNotExist()
            if entry.kind in (st.Kind.DIR, st.Kind.LINK):
                raise NotAFile()
            # A blob bigger than the cache is inflated a piece at a time into
            # a temporary file shared by its readers, never held whole.
            reader = self._conn.store.reader(entry)
        for offset in range(0, reader.size, chunk_size):
            with self._conn.lock, _store_errors():
                data = reader.read(offset, chunk_size)
            yield data

    def stat(self, path: PathLike) -> Stat | None:
        steps = to_steps(path)
        with self._conn.lock, _store_errors():
            entry = self._entry(steps)
            if entry is None:
                return None
            if entry.kind is st.Kind.DIR:
                return Stat(Kind.DIR, 0)
            return Stat(convert_kind(entry.kind, Kind), self._conn.store.content_size(entry))


class GitCommit(Commit):
    def __init__(self, conn: GitConnection, info: st.CommitInfo) -> None:
        self._conn = conn
        self._info = info
        self.id = info.id

    @property
    def message(self) -> str:
        return render_message(self._info.message).decode("utf-8", "replace")

    @property
    def parents(self) -> list[Commit]:
        return [self._conn.commit_of(p) for p in self._info.parents]

    @property
    def tree_id(self) -> str:
        return self._info.tree

    @property
    def time(self) -> int:
        return self._info.time

    def tree(self) -> GitTree:
        with self._conn.lock, _store_errors():
            return GitTree(self._conn, self._conn.store.tree(self._info.tree))

    def diff(self, other: Commit) -> list[Diff]:
        with self._conn.lock, _store_errors():
            other_tree = self._conn.store.commit_info(other.id).tree
            return to_diffs(self._conn.store.diff(other_tree, self._info.tree))


class GitBranch(Branch):
    def __init__(self, conn: GitConnection, name: str) -> None:
        self._conn = conn
        self.name = name

    def head(self) -> GitCommit | None:
        with self._conn.lock, _store_errors():
            sha = self._conn.store.head(self.name)
            return self._conn.commit_of(sha) if sha else None

    def fast_forward(self, commit: CommitLike) -> None:
        sha = self._conn._commit_id(commit)
        with self._conn.lock, _store_errors():
            self._conn.store.fast_forward(self.name, sha)

    def transaction(self) -> GitTransaction:
        conn = self._conn
        with conn.lock, _store_errors():
            txn = st.Transaction(conn.store, self.name, author=conn.author)
        return GitTransaction(conn, self, txn)

    def remove(self) -> None:
        self._conn.remove_branch(self.name)

    def _head_events(
        self, deadline: float | None, cancel: Cancel | None
    ) -> Iterator[Commit | None]:
        conn = self._conn
        last: Any = ()
        if cancel is not None and cancel.is_set():
            return
        while True:
            version = conn.watch_version()
            head = self.head()
            sha = head.id if head else None
            if sha != last:
                last = sha
                yield head
            if not conn.wait_change(version, deadline, cancel):
                return

    def _path_events(
        self, path: Steps, deadline: float | None, cancel: Cancel | None
    ) -> Iterator[File | Exec | Link | Tree | None]:
        conn = self._conn
        last: Any = ()  # never equal to an entry or None
        if cancel is not None and cancel.is_set():
            return
        while True:
            version = conn.watch_version()
            with conn.lock, _store_errors():
                head = conn.store.head(self.name)
                if head is None:
                    entry = st.Entry(st.Kind.DIR, st.EMPTY_TREE) if not path else None
                else:
                    entry = conn.store.tree(conn.store.commit_info(head).tree).lookup(path)
                changed = entry != last
                if changed:
                    last = entry
                    node = self._node(entry)
            if changed:
                yield node
            if not conn.wait_change(version, deadline, cancel):
                return

    def _node(self, entry: st.Entry | None) -> File | Exec | Link | Tree | None:
        if entry is None:
            return None
        store = self._conn.store
        if entry.kind is st.Kind.DIR:
            return GitTree(self._conn, store.tree(entry.sha))
        data = store.content(entry)
        if entry.kind is st.Kind.EXEC:
            return Exec(data)
        if entry.kind is st.Kind.LINK:
            return Link(data.decode("utf-8", "surrogateescape"))
        return File(data)


class GitTransaction(Transaction):
    """The client API over a store :class:`~datakit.store.Transaction`, the
    very one behind a server's transaction directories: merges and commits
    are the server's own code."""

    def __init__(self, conn: GitConnection, branch: GitBranch, txn: st.Transaction) -> None:
        super().__init__()
        self._conn = conn
        self.branch = branch
        self._txn = txn
        self._tree = txn.tree

    def __repr__(self) -> str:
        return f"<GitTransaction on {self.branch.name}>"

    def _steps(self, path: PathLike) -> Steps:
        self._check_open()
        return to_steps(path)

    def _kind(self, steps: Steps) -> st.Kind | None:
        """Kind at ``steps``; None if absent; NotADirectory if a proper prefix
        is a file (what a 9p walk through a file reports)."""
        kind = self._tree.kind(steps)
        if kind is None:
            for i in range(1, len(steps)):
                prefix_kind = self._tree.kind(steps[:i])
                if prefix_kind is None:
                    break
                if prefix_kind is not st.Kind.DIR:
                    raise NotADirectory()
        return kind

    def _require_parent(self, steps: Steps) -> None:
        """The parent must exist and be a directory (as on 9p, where the
        client walks to it first)."""
        parent = self._kind(steps[:-1])
        if parent is None:
            raise DoesNotExist()
        if parent is not st.Kind.DIR:
            raise NotADirectory()

    # -- reads ------------------------------------------------------------------

    def read(self, path: PathLike) -> Value:
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            kind = self._tree.kind(steps)
            if kind is None:
                raise DoesNotExist()
            if kind is st.Kind.DIR:
                return Dir(tuple(name for name, _ in self._tree.listdir(steps)))
            data = self._tree.read_all(steps)
        if kind is st.Kind.LINK:
            return Link(data.decode("utf-8", "surrogateescape"))
        return File(data)

    def _chunks(self, path: PathLike, chunk_size: int) -> Iterator[bytes]:
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            kind = self._tree.kind(steps)
            if kind is None:
                raise DoesNotExist()
            if kind in (st.Kind.DIR, st.Kind.LINK):
                raise NotAFile()
        offset = 0
        while True:
            self._check_open()
            with self._conn.lock, _store_errors():
                try:
                    data = self._tree.read(steps, offset, chunk_size)
                except st.InvalidOffset:
                    return  # cut short meanwhile
            if not data:
                return
            offset += len(data)
            yield data

    def stat(self, path: PathLike) -> Stat | None:
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            found = self._tree.stat(steps)
        if found is None:
            return None
        kind, size = found
        return Stat(convert_kind(kind, Kind), 0 if kind is st.Kind.DIR else size)

    # -- writes -------------------------------------------------------------------

    def create_dir(self, path: PathLike) -> None:
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            if not steps:
                raise AlreadyExists()
            check_new_name(steps[-1], directory=True)  # first, as the 9p backend does
            if self._kind(steps) is not None:
                raise AlreadyExists()
            self._require_parent(steps)
            self._tree.mkdir(steps)

    def _put(self, path: PathLike, data: bytes, kind: st.Kind) -> None:
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            if not steps:
                raise IsADirectory()
            check_new_name(steps[-1], symlink=kind is st.Kind.LINK)  # first, as on 9p
            if self._kind(steps) is st.Kind.DIR:
                raise IsADirectory()
            self._require_parent(steps)
            self._tree.put(steps, bytes(data), kind)

    def create_file(self, path: PathLike, data: bytes, executable: bool = False) -> None:
        self._put(path, data, st.Kind.EXEC if executable else st.Kind.FILE)

    def create_symlink(self, path: PathLike, target: str) -> None:
        self._put(path, target.encode("utf-8", "surrogateescape"), st.Kind.LINK)

    def _existing_file(self, steps: Steps) -> st.Kind:
        kind = self._kind(steps)
        if kind is None:
            raise DoesNotExist()
        if kind is st.Kind.DIR:
            raise IsADirectory()
        return kind

    def replace_file(self, path: PathLike, data: bytes) -> None:
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            kind = self._existing_file(steps)
            if kind is st.Kind.GITLINK:
                raise st.ReadOnlyEntry()
            self._tree.put(steps, bytes(data), kind)

    def set_executable(self, path: PathLike, executable: bool) -> None:
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            self._existing_file(steps)
            self._tree.set_kind(steps, st.Kind.EXEC if executable else st.Kind.FILE)

    def remove(self, path: PathLike) -> None:
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            if steps and self._kind(steps) is None:
                raise DoesNotExist()
            self._tree.remove(steps)

    def truncate(self, path: PathLike, length: int) -> None:
        if length < 0:
            raise ValueError(f"Negative offset {length}")
        steps = self._steps(path)
        with self._conn.lock, _store_errors():
            if self._kind(steps) is None:
                raise DoesNotExist()
            self._tree.truncate(steps, length)

    # -- merging and history ----------------------------------------------------------

    def merge(self, commit: CommitLike) -> MergeResult:
        self._check_open()
        theirs = self._conn._commit_id(commit)
        conn = self._conn
        with conn.lock, _store_errors():
            merge = self._txn.merge(theirs)
            inputs = MergeInputs(
                GitTree(conn, conn.store.tree(merge.ours)),
                GitTree(conn, conn.store.tree(merge.theirs)),
                GitTree(conn, conn.store.tree(merge.base or st.EMPTY_TREE)),
            )
        return MergeResult(inputs, sorted((path_str(p) for p in merge.conflicts), key=path_key))

    def parents(self) -> list[Commit]:
        self._check_open()
        return [self._conn.commit_of(p) for p in self._txn.parents]

    def set_parents(self, parents: Iterable[CommitLike]) -> None:
        self._check_open()
        self._txn.parents = [self._conn._commit_id(p) for p in parents]

    def conflicts(self) -> list[str]:
        self._check_open()
        with self._conn.lock, _store_errors():
            return sorted((path_str(p) for p in self._tree.conflicts), key=path_key)

    def diff(self, commit: CommitLike) -> list[Diff]:
        self._check_open()
        sha = self._conn._commit_id(commit)
        with self._conn.lock, _store_errors():
            store = self._conn.store
            return to_diffs(store.diff(store.commit_info(sha).tree, self._tree.write_tree()))

    def commit(self, message: str) -> None:
        self._check_open()
        with self._conn.lock, _store_errors():
            self._txn.message = message.encode()
            # Automatic merges say "Merge", as the server's do (upstream's
            # Git backend reused the transaction message instead).
            self._txn.commit()
            self._closed = True

    def abort(self) -> None:
        self._closed = True
