"""What a forge knows, as plain values: repositories, pull requests, refs,
commits, statuses, snapshots of all of them, and diffs between snapshots
(spec/bridges.md §2).

Pure (no I/O), shared by the bridges and the CI: the GitHub bridge keeps one
snapshot of what GitHub holds and one of what the ``github-metadata`` branch
holds, and reconciles them with :meth:`Snapshot.diff`. Every value is a
frozen, hashable dataclass so snapshots are frozensets and compare by value.

Identity (what ``.id`` returns): a PR is ``PRId(repo, number)``, a ref
``RefId(repo, name)``, a status ``StatusId(repo, commit, context)``; a repo
and a commit are their own id. Two elements with the same id are versions
of one thing: a snapshot holds at most one of them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
"""GitHub's characters for user and repository names (and upstream's check)."""

DEFAULT_CONTEXT: tuple[str, ...] = ("default",)
"""The context of a status GitHub reports without one (null context)."""


def _check_name(text: str) -> bool:
    return bool(NAME_RE.fullmatch(text)) and text not in (".", "..")


@dataclass(frozen=True, order=True, slots=True)
class Repo:
    """A GitHub repository ``user/name``; ``str(repo)`` is ``"user/name"``."""

    user: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Repo:
        """``"u/r"`` -> ``Repo("u", "r")``; anything else is a ValueError with
        upstream's message (the local bridge prints it as is)."""
        parts = text.strip().split("/")
        if len(parts) != 2 or not all(_check_name(p) for p in parts):
            raise ValueError(f'Bad repository name "{text}" (format should be user/project)')
        return cls(parts[0], parts[1])

    @property
    def id(self) -> Repo:
        return self

    @property
    def path(self) -> tuple[str, str]:
        """Where the repository lives in ``github-metadata``."""
        return (self.user, self.name)

    def __str__(self) -> str:
        return f"{self.user}/{self.name}"


@dataclass(frozen=True, order=True, slots=True)
class Commit:
    """A commit of a repository, by its SHA-1 (40 hex)."""

    repo: Repo
    sha: str

    @property
    def id(self) -> Commit:
        return self

    def __str__(self) -> str:
        return f"commit {self.repo} {self.sha}"


@dataclass(frozen=True, order=True, slots=True)
class Comment:
    """A PR comment; comment 0 is the PR's own description (id 0, its owner)."""

    id: int
    user: str
    body: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "user", self.user.strip())


class PRState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class StatusState(enum.StrEnum):
    ERROR = "error"
    FAILURE = "failure"
    PENDING = "pending"
    SUCCESS = "success"


@dataclass(frozen=True, order=True, slots=True)
class PRId:
    repo: Repo
    number: int

    def __str__(self) -> str:
        return f"PR {self.repo}#{self.number}"


@dataclass(frozen=True, order=True, slots=True)
class RefId:
    repo: Repo
    name: tuple[str, ...]

    def __str__(self) -> str:
        return f"ref {self.repo} {'/'.join(self.name)}"


@dataclass(frozen=True, order=True, slots=True)
class StatusId:
    repo: Repo
    commit: str
    context: tuple[str, ...]

    def __str__(self) -> str:
        return f"status {self.repo} {self.commit} {'/'.join(self.context)}"


@dataclass(frozen=True, slots=True)
class PR:
    """An open or closed pull request. ``head`` is the head commit's SHA."""

    repo: Repo
    number: int
    head: str
    state: PRState
    title: str
    base: str = "master"
    owner: str = ""
    comments: tuple[Comment, ...] = ()

    def __post_init__(self) -> None:
        # Readers trim (§1.2), so values are kept trimmed: a snapshot then
        # survives a write/read round trip unchanged (upstream trimmed too).
        for name in ("head", "title", "base", "owner"):
            object.__setattr__(self, name, getattr(self, name).strip())
        object.__setattr__(self, "state", PRState(self.state))
        object.__setattr__(self, "comments", tuple(self.comments))

    @property
    def id(self) -> PRId:
        return PRId(self.repo, self.number)

    @property
    def head_commit(self) -> Commit:
        return Commit(self.repo, self.head)

    def __str__(self) -> str:
        return f"PR {self.repo}#{self.number} {self.head} {self.state} {self.title!r}"


@dataclass(frozen=True, slots=True)
class Ref:
    """A Git ref; ``name`` has no ``refs/``: ``("heads", "feature", "x")``."""

    repo: Repo
    name: tuple[str, ...]
    head: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", tuple(self.name))
        object.__setattr__(self, "head", self.head.strip())

    @property
    def id(self) -> RefId:
        return RefId(self.repo, self.name)

    @property
    def head_commit(self) -> Commit:
        return Commit(self.repo, self.head)

    def __str__(self) -> str:
        return f"ref {self.repo} {'/'.join(self.name)} {self.head}"


def context_of(text: str | None) -> tuple[str, ...]:
    """GitHub's context string -> our components (null or empty -> ``default``)."""
    if not text:
        return DEFAULT_CONTEXT
    parts = tuple(p for p in text.split("/") if p)
    return parts or DEFAULT_CONTEXT


@dataclass(frozen=True, slots=True)
class Status:
    """A commit status. ``context`` is split on ``/``; GitHub's null context
    is ``("default",)``. ``description``/``target_url`` None: no such file."""

    repo: Repo
    commit: str
    context: tuple[str, ...]
    state: StatusState
    description: str | None = None
    target_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "context", tuple(self.context))
        object.__setattr__(self, "state", StatusState(self.state))
        for name in ("description", "target_url"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value.strip())

    @property
    def id(self) -> StatusId:
        return StatusId(self.repo, self.commit, self.context)

    @property
    def on_commit(self) -> Commit:
        return Commit(self.repo, self.commit)

    @property
    def context_str(self) -> str:
        """The context as GitHub spells it (``ci/datakit/test``)."""
        return "/".join(self.context)

    def __str__(self) -> str:
        return f"status {self.repo} {self.commit} {self.context_str} {self.state}"


Element = Repo | Commit | PR | Ref | Status
ElementId = Repo | Commit | PRId | RefId | StatusId

_KIND_ORDER = {Repo: 0, Commit: 1, PRId: 2, PR: 2, RefId: 3, Ref: 3, StatusId: 4, Status: 4}


def id_of(element: Element) -> ElementId:
    return element.id


def repo_of(item: Element | ElementId) -> Repo:
    """The repository an element or id belongs to."""
    if isinstance(item, Repo):
        return item
    return item.repo


def id_key(ident: ElementId) -> tuple[object, ...]:
    """A total order on ids of all kinds (repos first, then commits, PRs,
    refs, statuses), so messages and listings are deterministic."""
    return (_KIND_ORDER[type(ident)], ident)


def element_key(element: Element) -> tuple[object, ...]:
    return id_key(element.id)


# --- events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PRUpdated:
    """A webhook (or single import) said this is the PR now (open or closed)."""

    pr: PR


@dataclass(frozen=True, slots=True)
class RefUpdated:
    ref: Ref
    created: bool = False


@dataclass(frozen=True, slots=True)
class RefRemoved:
    id: RefId


@dataclass(frozen=True, slots=True)
class StatusUpdated:
    status: Status


Event = PRUpdated | RefUpdated | RefRemoved | StatusUpdated
"""What a webhook delivery turns into; applied with :meth:`Snapshot.apply`."""
Change = Event


# --- snapshots and diffs -----------------------------------------------------


def _closure(
    repos: Iterable[Repo],
    commits: Iterable[Commit],
    prs: Iterable[PR],
    refs: Iterable[Ref],
    statuses: Iterable[Status],
) -> tuple[frozenset[Repo], frozenset[Commit], frozenset[PR], frozenset[Ref], frozenset[Status]]:
    prs, refs, statuses = frozenset(prs), frozenset(refs), frozenset(statuses)
    commit_set = set(commits)
    commit_set.update(pr.head_commit for pr in prs)
    commit_set.update(ref.head_commit for ref in refs)
    commit_set.update(s.on_commit for s in statuses)
    repo_set = set(repos)
    for group in (commit_set, prs, refs, statuses):
        repo_set.update(e.repo for e in group)  # type: ignore[attr-defined]
    return frozenset(repo_set), frozenset(commit_set), prs, refs, statuses


@dataclass(frozen=True)
class Snapshot:
    """The five sets. Construction adds what elements imply (the repo of
    every element, the head commit of every PR and ref, the commit of every
    status), like upstream's ``Snapshot.v``; so ``Snapshot(prs=...)`` is
    enough. Lookups by id are indexed on first use."""

    repos: frozenset[Repo] = frozenset()
    commits: frozenset[Commit] = frozenset()
    prs: frozenset[PR] = frozenset()
    refs: frozenset[Ref] = frozenset()
    statuses: frozenset[Status] = frozenset()

    def __post_init__(self) -> None:
        sets = _closure(self.repos, self.commits, self.prs, self.refs, self.statuses)
        for name, value in zip(("repos", "commits", "prs", "refs", "statuses"), sets, strict=True):
            object.__setattr__(self, name, value)

    # -- construction

    @classmethod
    def of(cls, elements: Iterable[Element]) -> Snapshot:
        """A snapshot of these elements (later ones replace earlier ones with
        the same id)."""
        by_id: dict[ElementId, Element] = {}
        for e in elements:
            by_id[e.id] = e
        return cls._from_index(by_id.values())

    @classmethod
    def _from_index(cls, elements: Iterable[Element]) -> Snapshot:
        repos: list[Repo] = []
        commits: list[Commit] = []
        prs: list[PR] = []
        refs: list[Ref] = []
        statuses: list[Status] = []
        for e in elements:
            if isinstance(e, Repo):
                repos.append(e)
            elif isinstance(e, Commit):
                commits.append(e)
            elif isinstance(e, PR):
                prs.append(e)
            elif isinstance(e, Ref):
                refs.append(e)
            else:
                statuses.append(e)
        return cls(
            frozenset(repos),
            frozenset(commits),
            frozenset(prs),
            frozenset(refs),
            frozenset(statuses),
        )

    # -- reading

    def elements(self) -> Iterator[Element]:
        yield from self.repos
        yield from self.commits
        yield from self.prs
        yield from self.refs
        yield from self.statuses

    @cached_property
    def _index(self) -> dict[ElementId, Element]:
        return {e.id: e for e in self.elements()}

    def find(self, ident: ElementId) -> Element | None:
        return self._index.get(ident)

    def pr(self, ident: PRId) -> PR | None:
        found = self._index.get(ident)
        return found if isinstance(found, PR) else None

    def ref(self, ident: RefId) -> Ref | None:
        found = self._index.get(ident)
        return found if isinstance(found, Ref) else None

    def status(self, ident: StatusId) -> Status | None:
        found = self._index.get(ident)
        return found if isinstance(found, Status) else None

    def ids(self) -> frozenset[ElementId]:
        return frozenset(self._index)

    def __contains__(self, item: object) -> bool:
        """``element in snapshot`` (exact value) or ``id in snapshot``."""
        if isinstance(item, PRId | RefId | StatusId):
            return item in self._index
        if isinstance(item, Repo | Commit | PR | Ref | Status):
            return self._index.get(item.id) == item
        return False

    def of_repo(self, repo: Repo) -> Snapshot:
        """Only what belongs to ``repo`` (the repo included if known)."""
        return Snapshot._from_index(e for e in self.elements() if repo_of(e) == repo)

    def is_empty(self) -> bool:
        return not self.repos

    # -- changing (every method returns a new snapshot)

    def with_elements(self, elements: Iterable[Element]) -> Snapshot:
        """Add or replace (by id) these elements."""
        index = dict(self._index)
        for e in elements:
            index[e.id] = e
        return Snapshot._from_index(index.values())

    def without(self, ids: Iterable[ElementId]) -> Snapshot:
        """Remove the elements with these ids. Removing a repo removes all of
        it; removing a commit keeps its statuses' implied commit (prune
        drops those)."""
        drop = set(ids)
        repos = {i for i in drop if isinstance(i, Repo)}
        return Snapshot._from_index(
            e for i, e in self._index.items() if i not in drop and repo_of(e) not in repos
        )

    def replace_repo(self, repo: Repo, other: Snapshot) -> Snapshot:
        """Import replaces everything known about ``repo`` (§3.3): keep the
        other repositories of ``self`` and take ``repo``'s elements from
        ``other``. The repo itself stays known even if ``other`` has nothing."""
        kept = (e for e in self.elements() if repo_of(e) != repo)
        taken = (e for e in other.elements() if repo_of(e) == repo)
        return Snapshot._from_index([*kept, *taken, repo])

    def replace_refs(self, repo: Repo, refs: Iterable[Ref]) -> Snapshot:
        """The refs of ``repo`` become exactly ``refs``; nothing else changes
        (the local bridge's view: it owns refs, not PRs or statuses)."""
        kept = (e for e in self.elements() if not (isinstance(e, Ref) and e.repo == repo))
        return Snapshot._from_index([*kept, *refs, repo])

    def apply(self, event: Event) -> Snapshot:
        """The snapshot after a webhook event (closed PRs stay until prune)."""
        if isinstance(event, PRUpdated):
            return self.with_elements([event.pr])
        if isinstance(event, RefUpdated):
            return self.with_elements([event.ref])
        if isinstance(event, RefRemoved):
            return self.without([event.id])
        return self.with_elements([event.status])

    def apply_diff(self, diff: Diff) -> Snapshot:
        return self.without(diff.removals).with_elements(diff.updates)

    def prune(self) -> Snapshot:
        """§3.6 step 5: drop closed PRs, commits that are neither an open
        PR's head nor a ref's head, and the statuses of dropped commits."""
        prs = frozenset(pr for pr in self.prs if pr.state is PRState.OPEN)
        live = {pr.head_commit for pr in prs} | {ref.head_commit for ref in self.refs}
        statuses = frozenset(s for s in self.statuses if s.on_commit in live)
        return Snapshot(self.repos, frozenset(live), prs, self.refs, statuses)

    def diff(self, other: Snapshot) -> Diff:
        """What turns ``other`` into ``self`` (like the client's ``a.diff(b)``:
        the change from ``other`` to ``self``): elements of ``self`` that
        ``other`` lacks or holds differently, and ids of ``other`` that
        ``self`` lacks."""
        updates = frozenset(e for e in self.elements() if other._index.get(e.id) != e)
        removals = frozenset(i for i in other._index if i not in self._index)
        return Diff(updates, removals)


@dataclass(frozen=True)
class Diff:
    """Elements to add or update, and ids to remove."""

    updates: frozenset[Element] = field(default_factory=frozenset)
    removals: frozenset[ElementId] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "updates", frozenset(self.updates))
        object.__setattr__(self, "removals", frozenset(self.removals))

    def is_empty(self) -> bool:
        return not self.updates and not self.removals

    def __bool__(self) -> bool:
        return not self.is_empty()

    @property
    def prs(self) -> list[PR]:
        return sorted((e for e in self.updates if isinstance(e, PR)), key=element_key)

    @property
    def refs(self) -> list[Ref]:
        return sorted((e for e in self.updates if isinstance(e, Ref)), key=element_key)

    @property
    def statuses(self) -> list[Status]:
        return sorted((e for e in self.updates if isinstance(e, Status)), key=element_key)

    def sorted_updates(self) -> list[Element]:
        return sorted(self.updates, key=element_key)

    def sorted_removals(self) -> list[ElementId]:
        return sorted(self.removals, key=id_key)

    def filter(
        self,
        keep_update: Callable[[Element], bool] | None = None,
        keep_removal: Callable[[ElementId], bool] | None = None,
    ) -> Diff:
        """A sub-diff: ``keep_update(element)`` / ``keep_removal(id)`` say what
        stays (None keeps everything)."""
        ups = self.updates
        if keep_update is not None:
            ups = frozenset(e for e in ups if keep_update(e))
        rms = self.removals
        if keep_removal is not None:
            rms = frozenset(i for i in rms if keep_removal(i))
        return Diff(ups, rms)

    def of_repo(self, repo: Repo) -> Diff:
        return self.filter(lambda e: repo_of(e) == repo, lambda i: repo_of(i) == repo)
