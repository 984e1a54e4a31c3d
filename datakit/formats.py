"""The text DataKit's files hold, written by the server and read by the 9p
client: one render/parse pair per format (spec/filesystem.md).

* node ids (`D-<tree>`, `F-`/`X-`/`L-<blob>`, `G-<commit>`): `tree.live`
  lines and the names under `trees/` (§3.3, §3.8);
* head lines: `head`, `head.live`, `reflog`, `remotes/<r>/head` (§3.3);
* a snapshot's `msg`, and what a submodule entry reads as;
* `parents` files: one commit id per line (§3.4, §3.7);
* path lists: a transaction's `conflicts` (§3.4);
* diff lines: `+ path`, `- path`, `* path` (§3.6), and the typed change
  (:class:`Change`) they stand for, which the store's diff returns.

It also holds the one mapping between the layers' kinds of entry. The
store, the vfs and the client each have a ``Kind`` enum (the store's values
are git modes, the client's are its public API, the vfs may import nothing
of ours), and all three name their members alike: FILE, EXEC, LINK, DIR,
GITLINK. So a kind crosses a layer by name (:func:`convert_kind`), and a
node id's letter is chosen by name too. Keeping the names equal is the one
rule; tests/test_formats.py checks it.

Pure functions on bytes and str, no I/O: imported by layers that may not
import each other (the store, the fs tree, both client backends).
Non-UTF-8 names travel as surrogate escapes in ``str``, as everywhere.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import NamedTuple, TypeVar

K = TypeVar("K", bound=enum.Enum)

Path = tuple[str, ...]

KIND_NAMES = frozenset({"FILE", "EXEC", "LINK", "DIR", "GITLINK"})
"""The member names every layer's ``Kind`` enum has, and no others."""


def convert_kind(kind: enum.Enum, into: type[K]) -> K:
    """``kind`` as the member of the same name in the enum ``into``
    (``convert_kind(st.Kind.LINK, vfs.Kind) is vfs.Kind.LINK``)."""
    return into[kind.name]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# -- node ids -----------------------------------------------------------------

_LETTERS = {"DIR": "D", "FILE": "F", "EXEC": "X", "LINK": "L", "GITLINK": "G"}
_NAMES = {letter: name for name, letter in _LETTERS.items()}
_HEX = frozenset("0123456789abcdef")


def render_node_id(kind: enum.Enum, sha: str) -> str:
    """``F-<sha>`` and the like: what an object is (by letter) and its id."""
    return f"{_LETTERS[kind.name]}-{sha}"


def parse_node_id(text: str, kinds: type[K]) -> tuple[K, str]:
    """The kind (a member of ``kinds``) and object id of a node id.

    Whitespace around the id and around its hash part is ignored, as
    `trees/` lookups allow (spec §3.8). ValueError if malformed.
    """
    letter, dash, sha = text.strip().partition("-")
    sha = sha.strip()
    if not dash or letter not in _NAMES or len(sha) != 40 or not _HEX.issuperset(sha):
        raise ValueError(f"not a node id: {text!r}")
    return kinds[_NAMES[letter]], sha


def render_node_line(node: tuple[enum.Enum, str] | None) -> bytes:
    """A `tree.live` line: the node id of what is at the path, or a blank
    line if nothing is."""
    return b"\n" if node is None else _encode(render_node_id(*node)) + b"\n"


def parse_node_line(line: bytes, kinds: type[K]) -> tuple[K, str] | None:
    """A `tree.live` line (its newline optional): None if blank."""
    text = _decode(line).strip()
    return parse_node_id(text, kinds) if text else None


# -- heads ----------------------------------------------------------------------


def render_head(head: str | None) -> bytes:
    """`head`, `head.live` and `reflog`: ``<id>\\n``, a blank line for no head."""
    return f"{head}\n".encode() if head else b"\n"


def render_fetched_head(head: str | None) -> bytes:
    """`remotes/<r>/head`: as :func:`render_head`, but empty (no line at
    all) until the first fetch, so its first read returns nothing (§2.6)."""
    return render_head(head) if head else b""


def parse_head(text: bytes) -> str | None:
    """The id on the first line of any of the head files; None if there is
    none (a blank line or an empty file)."""
    first = text.split(b"\n", 1)[0].strip()
    return _decode(first) if first else None


# -- commits and submodules ------------------------------------------------------


def render_message(message: bytes) -> bytes:
    """A snapshot's `msg`: the commit message and a newline (spec §3.7)."""
    return message + b"\n"


def render_gitlink(sha: str) -> bytes:
    """What a submodule entry reads as: its commit id and a newline."""
    return sha.encode("ascii") + b"\n"


# -- parents and path lists ------------------------------------------------------


def render_parents(ids: Iterable[str]) -> bytes:
    """A `parents` file: one id per line, each ``\\n``-terminated."""
    return b"".join(_encode(i) + b"\n" for i in ids)


def parse_parents(text: bytes) -> list[str]:
    """The lines of a `parents` file, empty ones dropped, others not trimmed
    (spec §3.4): the caller checks each is a commit id. Invalid UTF-8 is
    replaced, so an error message can quote the line."""
    return [line.decode("utf-8", "replace") for line in text.split(b"\n") if line]


def render_paths(paths: Iterable[Path]) -> bytes:
    """A list of paths (`conflicts`): ``a/b\\n`` per path, in the given order."""
    return b"".join(_encode("/".join(p)) + b"\n" for p in paths)


def parse_paths(text: bytes) -> list[Path]:
    """The paths of a list written by :func:`render_paths` (blank lines
    ignored). A name holding a newline cannot be told apart from two."""
    return [tuple(line.split("/")) for line in _decode(text).split("\n") if line]


# -- diffs ------------------------------------------------------------------------


class DiffOp(enum.StrEnum):
    """How a file changed; the value is the diff line's mark."""

    ADDED = "+"  # only in the newer tree
    REMOVED = "-"  # only in the older tree
    UPDATED = "*"  # in both, with different content or kind


class Change(NamedTuple):
    """One changed file between two trees.

    A named tuple (with a str enum for ``op``) rather than a dataclass so it
    still equals the ``(mark, path)`` pair the store's diff returned before,
    and sorts by mark then path.
    """

    op: DiffOp
    path: Path


def render_diff(changes: Iterable[Change]) -> bytes:
    """A `diff/<id>` file: ``<mark> <path>\\n`` per change, in the given order."""
    return b"".join(_encode(f"{c.op} {'/'.join(c.path)}") + b"\n" for c in changes)


def parse_diff(text: bytes) -> list[Change]:
    """The changes of a `diff/<id>` file. Lines that are not ``<mark>
    <path>`` are skipped: a reader of another server's output takes what it
    understands."""
    changes = []
    for line in _decode(text).split("\n"):
        mark, space, path = line[:1], line[1:2], line[2:]
        if space == " " and path and mark in _MARKS:
            changes.append(Change(DiffOp(mark), tuple(path.split("/"))))
    return changes


_MARKS = frozenset(op.value for op in DiffOp)
