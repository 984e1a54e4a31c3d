"""`FakeGitHub`: the fake's state behind one lock, and the control API for tests.

Every public method is thread-safe: tests call them from the test thread
while the HTTP server answers from its own thread and webhooks leave from a
third.  Changes made here and changes made through the REST API go through
the same methods, so both send the same webhooks.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.bridges.fakegithub.shapes import Json, Shapes
from tests.bridges.fakegithub.state import (
    Comment,
    Hook,
    PullRequest,
    Repo,
    State,
    StateError,
    Status,
)
from tests.bridges.fakegithub.webhooks import Deliverer, Delivery, Payloads

RATE_LIMIT = 5000


@dataclass
class RequestRecord:
    """One HTTP request the fake received, and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    time: float
    status: int | None = None  # None when the connection was dropped instead


@dataclass
class _Failure:
    pattern: str
    method: str | None
    remaining: int
    status: int
    retry_after: int | None


@dataclass
class _RateLimit:
    pattern: str | None
    seconds: float
    reset: int | None = None  # set by the first request that hits it
    early: list[RequestRecord] = field(default_factory=list)


def normalise_ref(ref: str) -> str:
    """`master`, `heads/master` and `refs/heads/master` all name the branch."""
    if ref.startswith("refs/"):
        return ref
    if ref.startswith(("heads/", "tags/")):
        return f"refs/{ref}"
    return f"refs/heads/{ref}"


class FakeGitHub:
    """A stateful fake of the parts of api.github.com the bridge uses.

    Start it with `server.running_fake()` (or the `fake_github` fixture); the
    REST side is in `app.Api`.  `token`: when set, requests must carry
    `Authorization: token <token>` or `Bearer <token>`, else 401.
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.base_url = "http://fake.invalid"
        self.lock = threading.RLock()
        self.state = State()
        self.shapes = Shapes(self.state, self.base_url)
        self.payloads = Payloads(self.shapes)
        self._log: list[RequestRecord] = []
        self._failures: list[_Failure] = []
        self._rate: _RateLimit | None = None
        self._past_rate_limits: list[_RateLimit] = []
        self.rate_used = 0
        self.rate_window = int(time.time()) + 3600
        self.conditional = Counter[str]()
        self.not_modified_count = Counter[str]()
        self._deliveries: list[Delivery] = []
        self._silent = 0
        self._deliverer = Deliverer(self._delivered)
        self.network: str | None = None  # None, "refuse" or "close"
        self._network_listeners: list[Callable[[str | None], None]] = []

    def set_base_url(self, url: str) -> None:
        with self.lock:
            self.base_url = url.rstrip("/")
            self.shapes.api = self.base_url

    def close(self) -> None:
        self._deliverer.stop()

    # -- repositories and git data ---------------------------------------------------

    def create_repo(self, full_name: str, default_branch: str = "master") -> None:
        with self.lock:
            self.state.create_repo(full_name, default_branch)

    def _repo(self, full_name: str) -> Repo:
        try:
            return self.state.repo(full_name)
        except StateError:
            raise KeyError(f"fake GitHub has no repository {full_name}") from None

    def commit(self, repo: str, sha: str | None = None, *, message: str = "a commit",
               author: str = "alice", parents: list[str] | None = None) -> str:
        """Create a commit object (no ref moves); returns its SHA."""
        with self.lock:
            return self.state.add_commit(self._repo(repo), sha, message, author, parents).sha

    def push(self, repo: str, ref: str, sha: str | None = None, *, message: str = "a commit",
             author: str = "alice", forced: bool = False) -> str:
        """Point branch (or `tags/x`) `ref` at commit `sha` (made if new or None),
        as a `git push` would: webhooks `create` (new ref) and `push`, and
        `pull_request` `synchronize` for open PRs from that branch.  Returns the SHA."""
        with self.lock:
            r = self._repo(repo)
            name = normalise_ref(ref)
            before = r.refs.get(name)
            parents = [before] if before and before in r.commits else []
            commit = self.state.add_commit(r, sha, message, author, parents)
            self._set_ref(r, name, commit.sha, author, forced)
            return commit.sha

    def tag(self, repo: str, name: str, target: str, *, annotated: bool = False,
            message: str = "a tag", tagger: str = "alice", tag_sha: str | None = None) -> str:
        """Create tag `name` on commit `target`.  Annotated: a tag object is made and
        the ref points at it (returns the tag object's SHA); else returns `target`."""
        with self.lock:
            r = self._repo(repo)
            if target not in r.commits:
                self.state.add_commit(r, target, "a tagged commit", tagger)
            sha = target
            if annotated:
                sha = self.state.add_tag_object(r, name, target, message, tagger, tag_sha).sha
            self._set_ref(r, f"refs/tags/{name}", sha, tagger, False)
            return sha

    def delete_ref(self, repo: str, ref: str, *, sender: str = "alice") -> None:
        """Delete a branch or tag: webhooks `delete` and `push` (`deleted`, no head)."""
        with self.lock:
            r = self._repo(repo)
            name = normalise_ref(ref)
            before = r.refs.pop(name)
            r.pushed = time.time()
            self._emit(r, "delete", self.payloads.delete(r, name, sender))
            self._emit(r, "push", self.payloads.push(r, name, before, None, None, sender))

    def _set_ref(self, r: Repo, name: str, sha: str, sender: str, forced: bool) -> None:
        before = r.refs.get(name)
        if before == sha:
            return
        r.refs[name] = sha
        r.pushed = time.time()
        head = r.commits.get(r.resolve(sha) or "")
        if before is None:
            self._emit(r, "create", self.payloads.create(r, name, sender))
        self._emit(r, "push", self.payloads.push(r, name, before, sha, head, sender, forced))
        if name.startswith("refs/heads/"):
            branch = name[len("refs/heads/"):]
            for pr in r.pulls.values():
                if pr.state == "open" and pr.head_ref == branch:
                    old, pr.head_sha, pr.updated = pr.head_sha, sha, time.time()
                    self._emit(r, "pull_request",
                               self.payloads.pull_request(r, pr, "synchronize", sender,
                                                          before=old))

    def ref(self, repo: str, ref: str) -> str | None:
        """What `ref` points at (a tag object's SHA for annotated tags), or None."""
        with self.lock:
            return self._repo(repo).refs.get(normalise_ref(ref))

    def refs(self, repo: str) -> dict[str, str]:
        with self.lock:
            return dict(self._repo(repo).refs)

    # -- pull requests -------------------------------------------------------------

    def open_pull(self, repo: str, *, title: str, head: str, head_sha: str | None = None,
                  base: str | None = None, user: str = "alice", body: str | None = None,
                  number: int | None = None) -> int:
        """Open a PR from branch `head` (pushed first if `head_sha` is given or the
        branch is new).  `number` jumps the repo's issue counter (must not go back).
        Webhook `pull_request` `opened`; returns the number."""
        with self.lock:
            r = self._repo(repo)
            if head_sha is not None or normalise_ref(head) not in r.refs:
                self.push(repo, head, head_sha, author=user)
            sha = r.resolve(head)
            assert sha is not None
            if number is not None:
                if number < r.next_number:
                    raise ValueError(f"PR number {number} already used in {repo}")
                r.next_number = number
            pr = self.state.open_pull(r, title, head, sha, base or r.default_branch, user, body)
            self._emit(r, "pull_request", self.payloads.pull_request(r, pr, "opened", user))
            return pr.number

    def edit_pull(self, repo: str, number: int, *, title: str | None = None,
                  body: str | None = None, base: str | None = None, state: str | None = None,
                  sender: str = "alice") -> None:
        """Change a PR like the web UI or PATCH /pulls/{n} would: webhooks
        `edited` (title/body/base, with `changes`), `closed`, `reopened`."""
        with self.lock:
            self._edit_pull(self._repo(repo), number, title=title, body=body, base=base,
                            state=state, sender=sender)

    def close_pull(self, repo: str, number: int, *, sender: str = "alice") -> None:
        self.edit_pull(repo, number, state="closed", sender=sender)

    def reopen_pull(self, repo: str, number: int, *, sender: str = "alice") -> None:
        self.edit_pull(repo, number, state="open", sender=sender)

    def retitle_pull(self, repo: str, number: int, title: str, *, sender: str = "alice") -> None:
        self.edit_pull(repo, number, title=title, sender=sender)

    def retarget_pull(self, repo: str, number: int, base: str, *, sender: str = "alice") -> None:
        self.edit_pull(repo, number, base=base, sender=sender)

    def _edit_pull(self, r: Repo, number: int, *, title: str | None, body: str | None,
                   base: str | None, state: str | None, sender: str) -> PullRequest:
        doc = "https://docs.github.com/rest/pulls/pulls#update-a-pull-request"
        pr = r.pulls.get(number)
        if pr is None:
            raise StateError(404, "Not Found", None, doc)
        if state is not None and state not in ("open", "closed"):
            raise StateError(422, "Validation Failed",
                             [{"resource": "PullRequest", "code": "invalid", "field": "state"}],
                             doc)
        if base is not None and f"refs/heads/{base}" not in r.refs:
            raise StateError(422, "Validation Failed",
                             [{"resource": "PullRequest", "code": "invalid", "field": "base"}],
                             doc)
        changes: Json = {}
        if title is not None and title != pr.title:
            changes["title"] = {"from": pr.title}
            pr.title = title
        if body is not None and body != pr.body:
            changes["body"] = {"from": pr.body}
            pr.body = body
        if base is not None and base != pr.base_ref:
            changes["base"] = {"ref": {"from": pr.base_ref},
                               "sha": {"from": r.resolve(pr.base_ref) or pr.head_sha}}
            pr.base_ref = base
        if changes:
            pr.updated = time.time()
            self._emit(r, "pull_request",
                       self.payloads.pull_request(r, pr, "edited", sender, changes))
        if state is not None and state != pr.state:
            pr.state = state
            pr.updated = time.time()
            pr.closed = pr.updated if state == "closed" else None
            action = "closed" if state == "closed" else "reopened"
            self._emit(r, "pull_request", self.payloads.pull_request(r, pr, action, sender))
        return pr

    def pull(self, repo: str, number: int) -> PullRequest:
        """A copy of PR `number` (title, state, base_ref, head_sha, body, ...)."""
        with self.lock:
            return copy.copy(self._repo(repo).pulls[number])

    def add_comment(self, repo: str, number: int, body: str, *, user: str = "bob",
                    comment_id: int | None = None) -> int:
        """An issue comment on PR `number` (id chosen unless `comment_id`); returns
        its id.  No webhook: the bridge does not subscribe to issue_comment."""
        with self.lock:
            return self.state.add_comment(self._repo(repo), number, user, body, comment_id).id

    def comments(self, repo: str, number: int) -> list[Comment]:
        with self.lock:
            return [copy.copy(c) for c in self._repo(repo).comments.get(number, [])]

    # -- statuses --------------------------------------------------------------------

    def add_status(self, repo: str, sha: str, state: str, context: str | None = None, *,
                   description: str | None = None, target_url: str | None = None,
                   creator: str = "other-ci") -> int:
        """A status set by someone else (another CI); webhook `status`.  Raises
        `StateError` (422) on what GitHub would refuse.  Returns the status id."""
        with self.lock:
            return self._add_status(self._repo(repo), sha, state, context, description,
                                    target_url, creator).id

    def _add_status(self, r: Repo, sha: str, state: str, context: str | None,
                    description: str | None, target_url: str | None, creator: str) -> Status:
        st = self.state.add_status(r, sha, state, context, description, target_url, creator)
        self._emit(r, "status", self.payloads.status(r, st))
        return st

    def statuses(self, repo: str, sha: str) -> list[Status]:
        """Every status ever set on `sha`, oldest first."""
        with self.lock:
            return [copy.copy(s) for s in self._repo(repo).statuses.get(sha, [])]

    def combined_status(self, repo: str, sha: str) -> tuple[str, dict[str, Status]]:
        """GitHub's combined state and the latest status per context."""
        with self.lock:
            state, latest = self._repo(repo).combined_state(sha)
            return state, {s.context: copy.copy(s) for s in latest}

    # -- hooks and webhooks --------------------------------------------------------

    def hooks(self, repo: str) -> list[Hook]:
        with self.lock:
            return [copy.deepcopy(h) for h in self._repo(repo).hooks.values()]

    def create_hook(self, repo: str, config: dict[str, str], events: list[str] | None = None,
                    *, active: bool = True, name: str = "web", sender: str = "alice") -> int:
        with self.lock:
            return self._create_hook(self._repo(repo), name, config, events or ["push"],
                                     active, sender).id

    def _create_hook(self, r: Repo, name: str, config: dict[str, str], events: list[str],
                     active: bool, sender: str) -> Hook:
        t = time.time()
        config = {"content_type": "form", "insecure_ssl": "0", **config}
        hook = Hook(next(self.state.ids), name, active, list(events), config, t, t)
        r.hooks[hook.id] = hook
        if active:
            self._send(r, hook, "ping", self.payloads.ping(r, hook, sender))
        return hook

    @contextlib.contextmanager
    def without_webhooks(self) -> Iterator[None]:
        """Change state without telling anybody (as if the hook was down)."""
        with self.lock:
            self._silent += 1
        try:
            yield
        finally:
            with self.lock:
                self._silent -= 1

    def _emit(self, r: Repo, event: str, payload: Json) -> None:
        if self._silent:
            return
        for hook in r.hooks.values():
            if hook.active and (event in hook.events or "*" in hook.events):
                self._send(r, hook, event, payload)

    def _send(self, r: Repo, hook: Hook, event: str, payload: Json) -> None:
        d = Deliverer.prepare(hook, r, event, payload)
        self._deliveries.append(d)
        self._deliverer.enqueue(d)

    def _delivered(self, d: Delivery) -> None:
        with self.lock:
            for r in self.state.repos.values():
                hook = r.hooks.get(d.hook_id)
                if hook is not None:
                    hook.last_response = {
                        "code": d.status or None,
                        "status": "active" if d.status and d.status < 300 else "failed",
                        "message": d.error or "OK"}

    def deliveries(self, event: str | None = None) -> list[Delivery]:
        """Webhook deliveries so far (queued, then attempted), oldest first."""
        with self.lock:
            return [d for d in self._deliveries if event is None or d.event == event]

    async def await_deliveries(self, timeout: float = 10.0) -> list[Delivery]:
        """`wait_deliveries` for trio tests."""
        await self.await_until(lambda: all(d.done.is_set() for d in self.deliveries()),
                               timeout)
        return self.deliveries()

    def wait_deliveries(self, timeout: float = 10.0) -> list[Delivery]:
        """Block until every queued delivery was attempted; returns them all."""
        for d in self.deliveries():
            if not d.done.wait(timeout):
                raise TimeoutError(f"webhook {d.event} to {d.url} not delivered")
        return self.deliveries()

    # -- failures, rate limits, the network ----------------------------------------

    def fail(self, pattern: str, count: int = 1, status: int = 502,
             method: str | None = None, retry_after: int | None = None) -> None:
        """The next `count` requests whose path matches the glob `pattern`
        (e.g. `/repos/u/r/statuses/*`; method optional) answer `status`, with
        `Retry-After` if given (GitHub's secondary rate limit: 403 or 429)."""
        with self.lock:
            self._failures.append(_Failure(pattern, method and method.upper(), count, status,
                                           retry_after))

    def rate_limit(self, seconds: float = 2.0, pattern: str | None = None) -> None:
        """The next request (matching `pattern`, if given) and all requests after
        it until the reset answer 403 with `X-RateLimit-Remaining: 0` and
        `X-RateLimit-Reset` `seconds` ahead (rounded up to a whole second, as
        the header is).  Requests after the first one and before the reset are
        recorded: see `requests_before_reset()`."""
        with self.lock:
            self._rate = _RateLimit(pattern, seconds)

    def requests_before_reset(self) -> list[RequestRecord]:
        """Requests that came, after a rate-limit 403, before its announced reset."""
        with self.lock:
            limits = [*self._past_rate_limits, *([self._rate] if self._rate else [])]
            return [r for lim in limits for r in lim.early]

    def rate_limit_reset(self) -> int | None:
        """The reset time (epoch s) of the current or last injected rate limit."""
        with self.lock:
            limits = [*self._past_rate_limits, *([self._rate] if self._rate else [])]
            return limits[-1].reset if limits else None

    def break_network(self, mode: str = "refuse") -> None:
        """`refuse`: stop listening and drop open connections; `close`: accept,
        read the request, then close the connection without an answer."""
        if mode not in ("refuse", "close"):
            raise ValueError(mode)
        self._set_network(mode)

    def heal_network(self) -> None:
        self._set_network(None)

    def _set_network(self, mode: str | None) -> None:
        with self.lock:
            self.network = mode
            listeners = list(self._network_listeners)
        for listener in listeners:
            listener(mode)

    def on_network_change(self, listener: Callable[[str | None], None]) -> None:
        with self.lock:
            self._network_listeners.append(listener)

    # -- the request log -------------------------------------------------------------

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Requests received, oldest first; `path` is a glob on the path (no query)."""
        with self.lock:
            return [r for r in self._log
                    if (method is None or r.method == method.upper())
                    and (path is None or fnmatch.fnmatchcase(r.path, path))]

    def clear_requests(self) -> None:
        with self.lock:
            self._log.clear()
            self.conditional.clear()
            self.not_modified_count.clear()

    def call_counts(self) -> Counter[tuple[str, str]]:
        """How many requests each (method, path) received."""
        with self.lock:
            return Counter((r.method, r.path) for r in self._log)

    def conditional_hits(self, path: str) -> int:
        """Requests to `path` that carried `If-None-Match`."""
        with self.lock:
            return self.conditional[path]

    def not_modified(self, path: str) -> int:
        """304 answers given for `path`."""
        with self.lock:
            return self.not_modified_count[path]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll `predicate` (from a thread that is not a trio loop) until it holds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(0.02)

    async def await_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """`wait_until` for trio tests."""
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(0.02)

    # -- used by app.Api (lock held) -----------------------------------------------

    def _record(self, rec: RequestRecord) -> None:
        self._log.append(rec)

    def _take_failure(self, method: str, path: str) -> tuple[int, int | None] | None:
        for f in self._failures:
            if (f.method is None or f.method == method) and fnmatch.fnmatchcase(path, f.pattern):
                f.remaining -= 1
                if f.remaining <= 0:
                    self._failures.remove(f)
                return f.status, f.retry_after
        return None

    def _rate_limited(self, rec: RequestRecord) -> int | None:
        """The reset time if this request is refused by an injected rate limit."""
        lim = self._rate
        if lim is None:
            return None
        if lim.reset is None:
            if lim.pattern is not None and not fnmatch.fnmatchcase(rec.path, lim.pattern):
                return None
            lim.reset = math.ceil(rec.time + lim.seconds)
            return lim.reset
        if rec.time < lim.reset:
            lim.early.append(rec)
            return lim.reset
        self._past_rate_limits.append(lim)
        self._rate = None
        return None

