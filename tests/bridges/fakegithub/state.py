"""The fake GitHub's state: plain data and the rules GitHub applies to it.

No I/O, no locking and no JSON here: `control.FakeGitHub` holds the lock,
renders JSON (`shapes`) and serves HTTP (`app`, `server`).  Keeping the rules
(combined status, PR numbering, ref kinds, validation) apart from HTTP lets
them be read and checked on their own.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

STATUS_STATES = ("error", "failure", "pending", "success")
DESCRIPTION_LIMIT = 140


class StateError(Exception):
    """A request GitHub would refuse; `status` and `body` say how."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None,
                 doc: str = "https://docs.github.com/rest") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.doc = doc


def not_found() -> StateError:
    return StateError(404, "Not Found")


def now_iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def fake_sha(*parts: object) -> str:
    """A stable 40-hex name for generated commits and tag objects."""
    return hashlib.sha1("\0".join(str(p) for p in parts).encode()).hexdigest()


@dataclass
class User:
    login: str
    id: int


@dataclass
class Commit:
    sha: str
    message: str
    author: str
    parents: list[str]
    timestamp: float


@dataclass
class TagObject:
    """An annotated tag: its own object whose `object` is the tagged commit."""

    sha: str
    tag: str
    message: str
    object_sha: str
    object_type: str
    tagger: str
    timestamp: float


@dataclass
class Status:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created: float


@dataclass
class Comment:
    id: int
    issue: int
    user: str
    body: str
    created: float
    updated: float


@dataclass
class PullRequest:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    head_ref: str
    head_sha: str
    base_ref: str
    state: str
    created: float
    updated: float
    closed: float | None = None


@dataclass
class Hook:
    id: int
    name: str
    active: bool
    events: list[str]
    config: dict[str, str]
    created: float
    updated: float
    last_response: dict[str, object] = field(
        default_factory=lambda: {"code": None, "status": "unused", "message": None})


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    default_branch: str
    created: float
    pushed: float
    commits: dict[str, Commit] = field(default_factory=dict)
    tags: dict[str, TagObject] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "refs/heads/x" -> object sha
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    comments: dict[int, list[Comment]] = field(default_factory=dict)
    statuses: dict[str, list[Status]] = field(default_factory=dict)  # oldest first
    hooks: dict[int, Hook] = field(default_factory=dict)
    next_number: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def object_type(self, sha: str) -> str:
        """`commit` or `tag` for what a ref points at (GitHub's `object.type`)."""
        return "tag" if sha in self.tags else "commit"

    def resolve(self, ref: str) -> str | None:
        """A commit SHA from a SHA, branch or tag name (tags peeled)."""
        sha: str | None
        if ref in self.commits:
            sha = ref
        else:
            sha = None
            for full in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
                if full in self.refs:
                    sha = self.refs[full]
                    break
        while sha is not None and sha in self.tags:
            sha = self.tags[sha].object_sha
        return sha

    def branches_at(self, sha: str) -> list[str]:
        return sorted(r[len("refs/heads/"):] for r, s in self.refs.items()
                      if r.startswith("refs/heads/") and s == sha)

    def combined_state(self, sha: str) -> tuple[str, list[Status]]:
        """GitHub's combined status: the latest status per context, newest first;
        failure if any is error or failure, pending if any is pending or none exist."""
        latest: dict[str, Status] = {}
        for st in self.statuses.get(sha, []):
            latest[st.context] = st
        chosen = sorted(latest.values(), key=lambda s: s.id, reverse=True)
        states = {s.state for s in chosen}
        if not chosen:
            return "pending", []
        if states & {"error", "failure"}:
            return "failure", chosen
        if "pending" in states:
            return "pending", chosen
        return "success", chosen


@dataclass
class State:
    """Every repository plus the id counters GitHub keeps across them."""

    repos: dict[str, Repo] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))

    def user(self, login: str) -> User:
        if login not in self.users:
            self.users[login] = User(login, next(self.ids))
        return self.users[login]

    def repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name.lower()]
        except KeyError:
            raise not_found() from None

    def create_repo(self, full_name: str, default_branch: str = "master") -> Repo:
        owner, sep, name = full_name.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"repository name {full_name!r} is not user/repo")
        self.user(owner)
        t = time.time()
        repo = Repo(owner, name, next(self.ids), default_branch, t, t)
        self.repos[full_name.lower()] = repo
        return repo

    def add_commit(self, repo: Repo, sha: str | None = None, message: str = "a commit",
                   author: str = "alice", parents: list[str] | None = None) -> Commit:
        if sha is None:
            sha = fake_sha(repo.full_name, "commit", len(repo.commits), message, time.time())
        if sha in repo.commits:
            return repo.commits[sha]
        commit = Commit(sha, message, author, parents or [], time.time())
        repo.commits[sha] = commit
        self.user(author)
        return commit

    def add_tag_object(self, repo: Repo, tag: str, target: str, message: str,
                       tagger: str, sha: str | None = None) -> TagObject:
        if target not in repo.commits and target not in repo.tags:
            raise ValueError(f"tag target {target} is not an object of {repo.full_name}")
        sha = sha or fake_sha(repo.full_name, "tag", tag, target, message, time.time())
        obj = TagObject(sha, tag, message, target, repo.object_type(target), tagger, time.time())
        repo.tags[sha] = obj
        return obj

    def add_status(self, repo: Repo, sha: str, state: str, context: str | None,
                   description: str | None, target_url: str | None, creator: str) -> Status:
        """Validate like GitHub (422 on a bad state or a long description)."""
        doc = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"
        if state not in STATUS_STATES:
            raise StateError(422, "Validation Failed",
                             [{"resource": "Status", "code": "custom", "field": "state",
                               "message": "state is not included in the list"}], doc)
        if description is not None and len(description) > DESCRIPTION_LIMIT:
            raise StateError(422, "Validation Failed",
                             [{"resource": "Status", "code": "custom", "field": "description",
                               "message": "description is too long (maximum is 140 characters)"}],
                             doc)
        commit = repo.resolve(sha)
        if commit is None:
            raise StateError(422, f"No commit found for SHA: {sha}", None, doc)
        t = time.time()
        status = Status(next(self.ids), commit, state, context or "default", description,
                        target_url, creator, t)
        repo.statuses.setdefault(commit, []).append(status)
        self.user(creator)
        return status

    def open_pull(self, repo: Repo, title: str, head_ref: str, head_sha: str, base: str,
                  user: str, body: str | None) -> PullRequest:
        t = time.time()
        pr = PullRequest(repo.next_number, next(self.ids), title, body, user, head_ref,
                         head_sha, base, "open", t, t)
        repo.next_number += 1
        repo.pulls[pr.number] = pr
        repo.comments.setdefault(pr.number, [])
        self.user(user)
        return pr

    def add_comment(self, repo: Repo, number: int, user: str, body: str,
                    comment_id: int | None = None) -> Comment:
        if number not in repo.pulls:
            raise not_found()
        t = time.time()
        c = Comment(comment_id or next(self.ids), number, user, body, t, t)
        repo.comments.setdefault(number, []).append(c)
        self.user(user)
        return c
