"""Plain values shared by both client backends: paths, stats, node values,
diffs and the sentinels of the watch functions.

They are small frozen dataclasses so that results from the 9p backend and
from the Git backend compare equal when they describe the same thing: a
script can assert on them without knowing which backend produced them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from datakit.client.errors import InvalidPath
from datakit.formats import Change, DiffOp

if TYPE_CHECKING:
    from datakit.client.api import Tree

PathLike = str | Sequence[str]
"""A path relative to a tree root: ``"a/b/c"`` or ``("a", "b", "c")``.

The root is ``""`` or ``()``. Steps may not be empty, ``.`` or ``..`` and
may not contain ``/``. Paths returned by the API (diffs, conflicts) are
``/``-joined strings, which round-trip through every function taking a path.
"""

Steps = tuple[str, ...]


def to_steps(path: PathLike) -> Steps:
    """Validate ``path`` and return its steps.

    Validation happens on the client so both backends reject the same paths
    with the same error, instead of the 9p one walking ``..`` on the server.
    """
    if isinstance(path, str):
        if path == "":
            return ()
        steps: Sequence[str] = path.split("/")
    else:
        steps = path
    for step in steps:
        if not isinstance(step, str):
            raise InvalidPath(f"path step {step!r} is not a string")
        if step in ("", ".", ".."):
            raise InvalidPath(f'Invalid path component "{step}"')
        if "/" in step:
            raise InvalidPath(f"'/' in path step \"{step}\"")
    return tuple(steps)


def path_str(steps: Steps) -> str:
    return "/".join(steps)


def path_key(path: str) -> Steps:
    """Sort key giving the order of step lists (``a/b`` before ``a-b``)."""
    return tuple(path.split("/"))


class Kind(enum.Enum):
    """What a path holds. ``EXEC`` is an executable regular file.

    The store's kinds have the same member names: the Git backend converts
    by name (``datakit.formats.convert_kind``), so keep them alike.
    """

    FILE = "file"
    EXEC = "exec"
    LINK = "link"
    DIR = "dir"
    # A submodule (git's gitlink): read-only, reads as File(b"<commit id>\n").
    GITLINK = "gitlink"


@dataclass(frozen=True, slots=True)
class Stat:
    """``size`` is the content length (the target length for a symlink, 0 for
    a directory)."""

    kind: Kind
    size: int


@dataclass(frozen=True, slots=True)
class File:
    """A regular file's content (``read`` also returns executables as File)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Exec:
    """An executable file's content; only watches distinguish it from File."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Link:
    target: str


@dataclass(frozen=True, slots=True)
class Dir:
    """A directory listing, names in byte order."""

    names: tuple[str, ...]


Value = File | Dir | Link
"""What ``read`` returns."""


@dataclass(frozen=True, slots=True, order=True)
class Added:
    """A file present in the newer state only."""

    path: str


@dataclass(frozen=True, slots=True, order=True)
class Removed:
    """A file present in the older state only."""

    path: str


@dataclass(frozen=True, slots=True, order=True)
class Updated:
    """A file present in both, with different content or kind."""

    path: str


Diff = Added | Removed | Updated


_DIFFS: dict[DiffOp, type[Added] | type[Removed] | type[Updated]] = {
    DiffOp.ADDED: Added,
    DiffOp.REMOVED: Removed,
    DiffOp.UPDATED: Updated,
}


def to_diffs(changes: Iterable[Change]) -> list[Diff]:
    """The store's (or a `diff/` file's) changes as the API's diff values,
    in path order on both backends (servers give no order)."""
    diffs = [_DIFFS[c.op](path_str(c.path)) for c in changes]
    return sorted(diffs, key=lambda d: (path_key(d.path), type(d).__name__))


class WaitSignal(enum.Enum):
    """Sentinels of ``wait_for_head`` / ``wait_for_path``.

    The function given to a wait returns ``AGAIN`` to keep waiting or any
    other value to finish the wait with that value. The wait itself returns
    ``ABORT`` when it timed out or was cancelled (the function may also
    return ``ABORT`` to stop). An enum rather than ``object()`` sentinels so
    type checkers can narrow on them.
    """

    AGAIN = "again"
    ABORT = "abort"


AGAIN: Literal[WaitSignal.AGAIN] = WaitSignal.AGAIN
ABORT: Literal[WaitSignal.ABORT] = WaitSignal.ABORT


class Cancel(Protocol):
    """Anything with ``is_set()``, typically a :class:`threading.Event`."""

    def is_set(self) -> bool: ...


class MergeInputs(NamedTuple):
    """The three trees of a merge (``base`` is the empty tree when the
    histories share no ancestor)."""

    ours: Tree
    theirs: Tree
    base: Tree


class MergeResult(NamedTuple):
    """What ``Transaction.merge`` returns: unpack as ``inputs, conflicts``."""

    inputs: MergeInputs
    conflicts: list[str]
