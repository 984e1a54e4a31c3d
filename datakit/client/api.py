"""The client API as abstract classes, with everything both backends share.

Each backend implements a handful of primitives (``read``, ``stat``, ``_chunks``, the
writes, the watch event streams); the derived operations (``exists``,
``read_file``, ``make_dirs``, the wait loops, the transaction context
manager...) live here once, so the two backends cannot drift apart on them.
Type annotations in user code should name these classes, not a backend's.
"""

from __future__ import annotations

import itertools
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Self, TypeVar

from datakit.client.errors import (
    InvalidBranchName,
    InvalidHash,
    InvalidName,
    NameTooLong,
    NotADirectory,
    NotAFile,
    NotASymlink,
    TransactionClosed,
)
from datakit.client.values import (
    ABORT,
    AGAIN,
    Cancel,
    Diff,
    Dir,
    Exec,
    File,
    Kind,
    Link,
    MergeResult,
    PathLike,
    Stat,
    Steps,
    Value,
    WaitSignal,
    to_steps,
)

T = TypeVar("T")

READ_CHUNK = 1 << 20
"""``read_chunks``' default piece size: big enough that per-piece costs
vanish, small enough that a reader of huge files stays small."""

_HEX40 = re.compile(r"[0-9a-fA-F]{40}\Z")
_BRANCH_CHARS = re.compile(r"[A-Za-z0-9_.\-]+\Z")


def parse_id(text: str, what: str = "commit") -> str:
    """Validate an object id on the client, so both backends reject a bad id
    with the same error before any I/O. Returns it in lower case."""
    if not isinstance(text, str):
        raise InvalidHash(f"invalid-hash {text!r}: a {what} id must be a string")
    if len(text) != 40:
        raise InvalidHash(
            f'invalid-hash "{text}": expected 40 hex digits, got {len(text)} characters'
        )
    if not _HEX40.match(text):
        raise InvalidHash(f'invalid-hash "{text}": not a hexadecimal string')
    return text.lower()


def check_branch_name(name: str) -> str:
    """DataKit's branch-name rule, minus ``/``: a branch must be addressable
    as one 9p path component, so a name the 9p backend cannot use is refused
    by the Git backend too (a script then works on either)."""
    ok = (
        isinstance(name, str)
        and _BRANCH_CHARS.match(name) is not None
        and not name.startswith(("-", "."))
        and not name.endswith((".", ".lock"))
        and ".." not in name
        and name != "HEAD"
    )
    if not ok:
        raise InvalidBranchName(f"{name} is not a valid branch name.")
    from datakit import store as st  # here: importing the client needs no store

    try:
        st.check_branch_name(name)  # the store's limits (length)
    except st.NameTooLong as exc:
        raise NameTooLong(str(exc)) from None
    return name


def check_new_name(name: str, *, symlink: bool = False, directory: bool = False) -> None:
    """The store's name rule (git's) for a file, directory or symlink about
    to be created, checked by both backends before anything else, so they
    refuse the same names with the same error and message. Only the created
    name is checked: a path through a missing directory is DoesNotExist."""
    from datakit import store as st

    try:
        st.check_name(name, symlink=symlink, directory=directory)
    except st.InvalidName as exc:
        raise InvalidName(str(exc)) from None
    except st.NameTooLong as exc:
        raise NameTooLong(str(exc)) from None


def check_remote_branch(name: str) -> str:
    """A branch of a remote repository: any Git branch name (``/`` allowed,
    it is never used as a path here), but nothing that would change the
    meaning of the one-line ``fetch`` command of the 9p backend."""
    if not isinstance(name, str) or not name or name != name.strip() or "\n" in name:
        raise InvalidBranchName(f"{name} is not a valid branch name.")
    return name


def deadline_of(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def aborted(deadline: float | None, cancel: Cancel | None) -> bool:
    """Whether a wait must stop now (timed out or cancelled)."""
    if cancel is not None and cancel.is_set():
        return True
    return deadline is not None and time.monotonic() >= deadline


def run_wait(events: Iterator[T], fn: Callable[[T], object]) -> object:
    """Feed each event to ``fn`` until it returns something other than AGAIN.

    ``events`` yields the current value first and then each change; it ends
    when the wait times out or is cancelled, which makes the wait ABORT. It
    is closed in every case so a backend can release its watch at once.
    """
    try:
        for value in events:
            result = fn(value)
            if result is not AGAIN:
                return result
        return ABORT
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


class Reader(ABC):
    """Read operations shared by trees (immutable) and transactions (live)."""

    @abstractmethod
    def read(self, path: PathLike) -> Value:
        """``File(bytes)``, ``Dir(names)`` or ``Link(target)``; DoesNotExist if
        nothing is there (also when a parent is a file). Executables read as
        File."""

    @abstractmethod
    def stat(self, path: PathLike) -> Stat | None:
        """Kind and size, or None if nothing is there."""

    def exists(self, path: PathLike) -> bool:
        return self.stat(path) is not None

    def exists_file(self, path: PathLike) -> bool:
        """True for anything but a directory: regular and executable files
        and symlinks (the spec's recommendation; upstream's backends
        disagreed on executables and symlinks)."""
        s = self.stat(path)
        return s is not None and s.kind is not Kind.DIR

    def exists_dir(self, path: PathLike) -> bool:
        s = self.stat(path)
        return s is not None and s.kind is Kind.DIR

    def read_file(self, path: PathLike) -> bytes:
        """Content of a regular or executable file; NotAFile for a directory
        or a symlink (use ``read_link``)."""
        value = self.read(path)
        if isinstance(value, File):
            return value.data
        raise NotAFile()

    def read_chunks(self, path: PathLike, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """Content of a regular or executable file as it is read, in
        non-empty pieces of at most ``chunk_size`` bytes (fewer on 9p, where
        a piece is at most one message), so a file of any size costs
        ``chunk_size`` of memory, not its size. An empty file yields nothing.

        Errors come from this call, as ``read_file``'s do (DoesNotExist,
        NotAFile for a directory or a symlink), not from the iteration; the
        file is opened here and released when the iterator ends or is
        garbage-collected. On a transaction the pieces are read live: a
        concurrent change may show part-way through."""
        if chunk_size < 1:
            raise ValueError(f"chunk size {chunk_size}: must be at least 1")
        chunks = self._chunks(path, chunk_size)
        first = next(chunks, None)  # opens the file: errors raise here
        if first is None:
            return iter(())
        return itertools.chain((first,), chunks)

    @abstractmethod
    def _chunks(self, path: PathLike, chunk_size: int) -> Iterator[bytes]:
        """``read_chunks``' generator; its errors raise at the first ``next``."""

    def read_dir(self, path: PathLike) -> list[str]:
        """Names in a directory, in byte order; NotADirectory otherwise."""
        value = self.read(path)
        if isinstance(value, Dir):
            return list(value.names)
        raise NotADirectory()

    def read_link(self, path: PathLike) -> str:
        value = self.read(path)
        if isinstance(value, Link):
            return value.target
        raise NotASymlink()


class Tree(Reader):
    """An immutable tree: a commit's, a merge input, or a watched directory."""


class Commit(ABC):
    """A commit. Equality, hashing and order are by id, so commits from two
    connections (even two backends) on the same store compare equal."""

    id: str

    @property
    @abstractmethod
    def message(self) -> str:
        """The commit message followed by ``"\\n"`` (on both backends)."""

    @property
    @abstractmethod
    def parents(self) -> list[Commit]:
        """Parent commits. Their order is not significant (treat as a set)."""

    @property
    @abstractmethod
    def tree_id(self) -> str:
        """The Git hash of the commit's root tree: two commits with the same
        tree id hold exactly the same files."""

    @property
    @abstractmethod
    def time(self) -> int:
        """The commit's time, in seconds since the epoch (the ``date`` of
        ``commits/<id>``)."""

    @abstractmethod
    def tree(self) -> Tree: ...

    @abstractmethod
    def diff(self, other: Commit) -> list[Diff]:
        """Files changed going from ``other`` to this commit: ``Added`` are
        in this commit only, ``Removed`` in ``other`` only. Sorted by path."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Commit) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __lt__(self, other: Commit) -> bool:
        return self.id < other.id

    def __repr__(self) -> str:
        return f"<Commit {self.id}>"

    def __str__(self) -> str:
        return self.id


CommitLike = Commit | str


class Transaction(Reader):
    """An open transaction on a branch: a private editable copy of the
    branch's tree plus a parent list, turned into a commit by ``commit``.

    Use it as a context manager: leaving the block without ``commit()`` (by
    an exception or otherwise) aborts it, like a database rollback. Every
    operation on a committed or aborted transaction raises
    TransactionClosed, except ``abort()`` (idempotent) and ``closed``.
    """

    def __init__(self) -> None:
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise TransactionClosed()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._closed:
            self.abort()

    # -- writes ---------------------------------------------------------------

    @abstractmethod
    def create_dir(self, path: PathLike) -> None:
        """Create one directory. The parent must exist (DoesNotExist) and be a
        directory (NotADirectory); AlreadyExists if anything is there."""

    @abstractmethod
    def create_file(self, path: PathLike, data: bytes, executable: bool = False) -> None:
        """Create a file, replacing an existing file or symlink. The parent
        must exist; IsADirectory if a directory is there."""

    @abstractmethod
    def create_symlink(self, path: PathLike, target: str) -> None:
        """Like ``create_file``, for a symlink."""

    @abstractmethod
    def replace_file(self, path: PathLike, data: bytes) -> None:
        """New content for an existing file, keeping its kind."""

    @abstractmethod
    def set_executable(self, path: PathLike, executable: bool) -> None: ...

    @abstractmethod
    def remove(self, path: PathLike) -> None:
        """Remove a file or a whole directory subtree (the root: everything).
        DoesNotExist if nothing is there."""

    @abstractmethod
    def truncate(self, path: PathLike, length: int) -> None:
        """Cut or zero-extend a file."""

    @abstractmethod
    def merge(self, commit: CommitLike) -> MergeResult:
        """Merge ``commit`` into the transaction (spec filesystem.md §4) and
        add it to the parents. Returns the merge inputs and the paths that
        conflicted in this merge; each holds a conflict file until written
        or removed. ConflictsRemain if an earlier merge is unresolved."""

    @abstractmethod
    def parents(self) -> list[Commit]: ...

    @abstractmethod
    def set_parents(self, parents: Iterable[CommitLike]) -> None:
        """Replace the parents of the commit to be made (no merge happens)."""

    @abstractmethod
    def conflicts(self) -> list[str]:
        """Paths with unresolved merge conflicts, in path order."""

    @abstractmethod
    def diff(self, commit: CommitLike) -> list[Diff]:
        """Files changed from ``commit`` to the transaction's current state."""

    @abstractmethod
    def commit(self, message: str) -> None:
        """Commit and close. ConflictsRemain or Conflict leave the transaction
        open so the caller can fix things and retry (or abort)."""

    @abstractmethod
    def abort(self) -> None:
        """Discard the transaction. Never fails; idempotent."""

    # -- derived ----------------------------------------------------------------

    def create_or_replace_file(self, path: PathLike, data: bytes) -> None:
        """Replace (keeping the kind) if a file is there, else create a
        regular file."""
        if self.exists(path):
            self.replace_file(path, data)
        else:
            self.create_file(path, data)

    def make_dirs(self, path: PathLike) -> None:
        """``mkdir -p``: succeeds if the directory exists; NotADirectory if a
        file is in the way."""
        steps = to_steps(path)
        self._check_open()
        missing = False
        for i in range(1, len(steps) + 1):
            prefix = steps[:i]
            if not missing:
                s = self.stat(prefix)
                if s is not None:
                    if s.kind is not Kind.DIR:
                        raise NotADirectory()
                    continue
                missing = True
            self.create_dir(prefix)


class Branch(ABC):
    """A named branch; it may have no commits yet."""

    name: str

    @abstractmethod
    def head(self) -> Commit | None: ...

    @abstractmethod
    def fast_forward(self, commit: CommitLike) -> None:
        """Move the branch to ``commit`` if that descends from the head (or the
        branch is empty, or already there); NotFastForward otherwise."""

    @abstractmethod
    def transaction(self) -> Transaction:
        """A new transaction starting from the current head."""

    @abstractmethod
    def remove(self) -> None:
        """Delete the branch; nothing happens if it does not exist."""

    @abstractmethod
    def _head_events(
        self, deadline: float | None, cancel: Cancel | None
    ) -> Iterator[Commit | None]:
        """The head now, then each new head; ends on timeout or cancel."""

    @abstractmethod
    def _path_events(
        self, path: Steps, deadline: float | None, cancel: Cancel | None
    ) -> Iterator[File | Exec | Link | Tree | None]:
        """The node at ``path`` now, then each time it changes; ends on
        timeout or cancel."""

    def wait_for_head(
        self,
        fn: Callable[[Commit | None], T | WaitSignal],
        timeout: float | None = None,
        cancel: Cancel | None = None,
    ) -> T | WaitSignal:
        """Call ``fn(head)`` now and after each change of the head until it
        returns something other than AGAIN; return that.

        Returns ABORT when ``timeout`` seconds pass or ``cancel.is_set()``
        (checked at least every 50 ms). ``fn`` always sees the current head
        first unless ``cancel`` is already set (so ``timeout=0`` polls once);
        after the timeout it is not called again. Changes that happen and are
        undone while ``fn`` runs may be missed; the latest head is not.
        """
        events = self._head_events(deadline_of(timeout), cancel)
        return run_wait(events, fn)  # type: ignore[return-value]

    def wait_for_path(
        self,
        path: PathLike,
        fn: Callable[[File | Exec | Link | Tree | None], T | WaitSignal],
        timeout: float | None = None,
        cancel: Cancel | None = None,
    ) -> T | WaitSignal:
        """Like ``wait_for_head`` for the node at ``path`` in the head's tree:
        ``fn`` gets None (absent), ``File(bytes)``, ``Exec(bytes)``,
        ``Link(target)`` or the directory's ``Tree``, and is called again only
        when that node changes. The root of a branch without commits is an
        empty directory."""
        events = self._path_events(to_steps(path), deadline_of(timeout), cancel)
        return run_wait(events, fn)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<Branch {self.name}>"


class Connection(ABC):
    """A connection to a DataKit store (a 9p server or a Git repository)."""

    @abstractmethod
    def branches(self) -> list[str]:
        """Branch names, sorted: the store's, plus those this connection
        opened with ``branch()`` that have no commit yet."""

    @abstractmethod
    def branch(self, name: str) -> Branch:
        """A handle on a branch, which need not exist yet."""

    @abstractmethod
    def remove_branch(self, name: str) -> None: ...

    @abstractmethod
    def commit(self, id: str) -> Commit:
        """The commit with this id: InvalidHash or DoesNotExist otherwise."""

    @abstractmethod
    def tree(self, id: str) -> Tree:
        """The tree with this id (a bare hash; ``D-<hash>`` as emitted by 9p
        watches is accepted too)."""

    @abstractmethod
    def fetch(self, url: str, branch: str) -> Commit:
        """Fetch ``refs/heads/<branch>`` of ``url`` and return its head. Local
        branches are not changed."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _commit_id(self, commit: CommitLike) -> str:
        """A commit's id; a string is looked up so a bad one fails early."""
        if isinstance(commit, Commit):
            return commit.id
        return self.commit(commit).id
