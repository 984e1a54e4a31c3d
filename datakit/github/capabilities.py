"""What the GitHub bridge may do: the ``-c`` flag (spec/bridges.md §3.5).

``-c "*:r,status[ci/datakit]:x,webhook:rw"`` is a comma-separated list of
``RESOURCE:OPS``. RESOURCE is ``*`` (everything not listed), ``repo``,
``repo[user]``, ``repo[user/name]``, ``pr``, ``commit``, ``ref``,
``status``, ``status[a/b/...]`` or ``webhook``; OPS any of ``r`` (import from
GitHub), ``w`` (push to GitHub), ``x`` (exclusive: DataKit wins on the first
sync; implies ``r`` and ``w``), possibly none. For ``repo`` and ``status``
the longest matching path prefix wins (plain ``repo``/``status`` is the
empty prefix, which still beats ``*``); for a resource listed twice the
last one wins. Without ``-c`` everything is ``rw``; with ``-c`` whatever
``*`` says, or nothing.

Pure: parsing, checks and diff filtering; the bridge decides when to use
which operation (``x`` on the first sync, ``w`` afterwards).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from datakit.github.model import (
    PR,
    Commit,
    Diff,
    Element,
    ElementId,
    PRId,
    Ref,
    RefId,
    Repo,
    Status,
    StatusId,
)

DEFAULT = "*:rw"
"""What the bridge may do when ``-c`` is not given."""

KINDS = ("repo", "pr", "commit", "ref", "status", "webhook")
PATH_KINDS = ("repo", "status")
"""Resources that take a ``[a/b]`` path qualifier."""


class CapabilityError(ValueError):
    """Unparsable ``-c`` text; the message names the bad part first
    (``foo: invalid resource``), as upstream's did."""


class Op(enum.StrEnum):
    READ = "r"
    WRITE = "w"
    EXCL = "x"


@dataclass(frozen=True, slots=True)
class Ops:
    """The letters given for one resource."""

    read: bool = False
    write: bool = False
    excl: bool = False

    @classmethod
    def parse(cls, text: str) -> Ops:
        if any(c not in "rwx" for c in text):
            raise CapabilityError(f"{text}: invalid capacities")
        return cls("r" in text, "w" in text, "x" in text)

    def allows(self, op: Op | str) -> bool:
        op = Op(op)
        if op is Op.EXCL:
            return self.excl
        if op is Op.READ:
            return self.read or self.excl
        return self.write or self.excl

    def __str__(self) -> str:
        return "r" * self.read + "w" * self.write + "x" * self.excl


@dataclass(frozen=True, slots=True)
class Rule:
    """``kind[path]:ops``; ``path`` is () for an unqualified resource."""

    kind: str
    path: tuple[str, ...]
    ops: Ops

    def __str__(self) -> str:
        qualifier = f"[{'/'.join(self.path)}]" if self.path else ""
        return f"{self.kind}{qualifier}:{self.ops}"


def _parse_resource(text: str) -> tuple[str, tuple[str, ...]] | None:
    """``"status[a/b]"`` -> ``("status", ("a", "b"))``; None for ``*``."""
    if text == "*":
        return None
    if text in KINDS:
        return text, ()
    kind, bracket, rest = text.partition("[")
    if bracket and kind in PATH_KINDS and rest.endswith("]"):
        path = tuple(rest[:-1].split("/"))
        if all(path):
            return kind, path
    raise CapabilityError(f"{text}: invalid resource")


@dataclass(frozen=True, slots=True)
class Capabilities:
    default: Ops
    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Capabilities:
        """Parse ``-c``'s argument; CapabilityError names the bad part."""
        default = Ops()
        rules: list[Rule] = []
        for item in text.split(","):
            item = item.strip()
            resource, colon, ops_text = item.partition(":")
            if not colon:
                raise CapabilityError(f"{item}: missing ':'")
            parsed = _parse_resource(resource.strip())
            ops = Ops.parse(ops_text.strip())
            if parsed is None:
                default = ops
            else:
                rules.append(Rule(parsed[0], parsed[1], ops))
        return cls(default, tuple(rules))

    @classmethod
    def all(cls) -> Capabilities:
        """The default without ``-c``: ``*:rw``."""
        return cls(Ops(read=True, write=True))

    def ops(self, kind: str, path: tuple[str, ...] | list[str] = ()) -> Ops:
        """The letters that apply to ``kind`` (with its path for repo and
        status): the longest matching prefix, later rules winning ties."""
        if kind not in KINDS:
            raise ValueError(f"{kind}: invalid resource")
        path = tuple(path)
        best: Rule | None = None
        for rule in self.rules:
            if rule.kind != kind or path[: len(rule.path)] != rule.path:
                continue
            if best is None or len(rule.path) >= len(best.path):
                best = rule
        return self.default if best is None else best.ops

    def can(self, op: Op | str, kind: str, path: tuple[str, ...] | list[str] = ()) -> bool:
        """``can("w", "status", ("ci", "datakit", "test"))``."""
        return self.ops(kind, path).allows(op)

    def allows(self, op: Op | str, item: Element | ElementId) -> bool:
        """May ``op`` be done on this element (or id) of a diff?"""
        if isinstance(item, Status | StatusId):
            return self.can(op, "status", item.context)
        if isinstance(item, PR | PRId):
            return self.can(op, "pr")
        if isinstance(item, Ref | RefId):
            return self.can(op, "ref")
        if isinstance(item, Commit):
            return self.can(op, "commit")
        if isinstance(item, Repo):
            return self.can(op, "repo", (item.user, item.name))
        raise TypeError(f"not an element: {item!r}")

    def filter(self, diff: Diff, op: Op | str) -> Diff:
        """The part of ``diff`` that ``op`` is allowed on."""
        return diff.filter(lambda e: self.allows(op, e), lambda i: self.allows(op, i))

    def exportable(self, diff: Diff, *, first_sync: bool) -> Diff:
        """What of DataKit-minus-GitHub may be pushed: ``x`` resources on the
        first sync (DataKit is authoritative only where exclusive), ``w``
        ones afterwards."""
        return self.filter(diff, Op.EXCL if first_sync else Op.WRITE)

    def __str__(self) -> str:
        return ",".join([f"*:{self.default}", *(str(r) for r in self.rules)])
