"""The GitHub REST calls of the bridge (spec/bridges.md §3.3 import, §3.4
export, §3.7 hook registration, §3.8 conditional polling), over githubkit.

One :class:`GitHubAPI` per process. Every call either returns model values
(:mod:`datakit.github.model`) or raises :class:`GitHubError` with a one-line
message: HTTP errors, network errors, bodies that are not JSON and bodies
githubkit's models reject all look the same to the reconciliation, which
logs the line and tries again on a later step.

Why not githubkit's own HTTP cache and retries: the bridge must know whether
*every* request of an import answered 304 (then the repository is unchanged
and costs no rate limit, BR-17), and must never sleep inside a call while
holding a step (BR-18 wants the *next* request to wait for the reset, not a
retry loop). So ETags, the last bodies and the rate-limit hold are kept here,
and githubkit is used for requests, typed request bodies and response models.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlencode

import httpx
import trio
from githubkit import GitHub
from githubkit.compat import type_validate_python
from githubkit.exception import GitHubException, RateLimitExceeded, RequestError, RequestFailed
from githubkit.response import Response
from githubkit_schemas.latest.models import (
    CombinedCommitStatus,
    GitRef,
    GitTag,
    Hook,
    IssueComment,
    PullRequest,
    PullRequestSimple,
)
from githubkit_schemas.latest.models import Status as GitHubStatus
from pydantic import ValidationError

from datakit import __version__
from datakit.bridges.github.metrics import MetricsHook
from datakit.github.model import (
    PR,
    Comment,
    PRState,
    Ref,
    Repo,
    Snapshot,
    Status,
    StatusId,
    StatusState,
    context_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URL = "https://api.github.com/"
PER_PAGE = 100
DESCRIPTION_LIMIT = 140
"""GitHub answers 422 to a longer status description (upstream #254)."""
MAX_WAIT = 900.0
"""The longest the client holds requests for a rate limit (seconds): GitHub's
reset is at most an hour away, but a bridge silent for an hour looks dead."""
HOOK_EVENTS = ["create", "delete", "push", "status", "pull_request"]
ITEM_CACHE_SIZE = 2048
"""ETag entries kept for single-item requests (a PR, a ref, a commit's statuses)."""


class GitHubError(Exception):
    """A GitHub call failed; ``str()`` is one line. ``status`` is the HTTP
    status when GitHub answered (None for network errors)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def truncate_description(text: str) -> str:
    """At most 140 characters, the last one ``…`` when cut."""
    if len(text) <= DESCRIPTION_LIMIT:
        return text
    return text[: DESCRIPTION_LIMIT - 1] + "…"


@dataclass
class _Page:
    """One URL's last answer: its ETag, its parsed items and the next page."""

    etag: str | None
    items: list[Any]
    next_url: str | None


@dataclass
class _Fetch:
    """The requests of one import: what they read from the last import's
    entries, what they store (committed only if the import succeeds, so a
    failed import cannot make the next one look unchanged), and whether any
    answer was new."""

    previous: Mapping[str, _Page]
    used: dict[str, _Page] = field(default_factory=dict)
    changed: bool = False

    def get(self, key: str) -> _Page | None:
        return self.used.get(key) or self.previous.get(key)

    def put(self, key: str, page: _Page) -> None:
        self.used[key] = page


class _ItemCache(_Fetch):
    """The ETag entries of single-item calls, shared by all of them and
    bounded (oldest dropped first)."""

    def __init__(self) -> None:
        super().__init__(previous={}, used=OrderedDict())

    def put(self, key: str, page: _Page) -> None:
        used = self.used
        assert isinstance(used, OrderedDict)
        used[key] = page
        used.move_to_end(key)
        while len(used) > ITEM_CACHE_SIZE:
            used.popitem(last=False)


class _Kit(GitHub[Any]):
    """githubkit's client keeping one httpx client (one connection pool) for
    the process: stock githubkit opens a client per request unless entered as
    a context, which it keeps in a ContextVar that trio tasks started before
    the entry do not see."""

    _shared: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def get_async_client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._shared is None:
            self._shared = await self._create_async_client()
        yield self._shared

    async def aclose(self) -> None:
        if self._shared is not None:
            client, self._shared = self._shared, None
            await client.aclose()


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return ""
    detail = str(body.get("message") or "")
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        parts = []
        for e in errors[:3]:
            if isinstance(e, dict):
                parts.append(str(e.get("message") or f"{e.get('field')} {e.get('code')}"))
            else:
                parts.append(str(e))
        detail += " (" + "; ".join(parts) + ")"
    return detail


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _login(user: Any) -> str:
    """A user's login; GitHub reports deleted accounts as null (``ghost`` on the web)."""
    return str(user.login) if user is not None else "ghost"


def _status_state(text: str) -> StatusState:
    try:
        return StatusState(text)
    except ValueError:
        return StatusState.FAILURE  # unknown states read as failure (§1.2)


def _ref_name(full: str) -> tuple[str, ...]:
    return tuple(full.removeprefix("refs/").split("/"))


def _reader(model: type[T]) -> Callable[[Response[Any]], T]:
    """Reads a response body as githubkit's `model`."""

    def read(response: Response[Any]) -> T:
        return type_validate_python(model, response.raw_response.json())

    return read


def _ignore(response: Response[Any]) -> None:
    return None


def _read_page(
    parse: Callable[[Any], list[T]], known: _Page | None, response: Response[Any]
) -> _Page | None:
    """One page of a list; None for a 304 to a page we hold."""
    if response.status_code == 304 and known is not None:
        return None
    raw = response.raw_response
    return _Page(raw.headers.get("etag"), parse(raw.json()), raw.links.get("next", {}).get("url"))


def _default_contexts(data: Any) -> Any:
    """A combined-status body with null contexts spelled ``default``, which
    is what GitHub reports for them and what githubkit's model requires."""
    if isinstance(data, dict) and isinstance(data.get("statuses"), list):
        data = dict(data)
        data["statuses"] = [
            {**s, "context": s.get("context") or "default"} if isinstance(s, dict) else s
            for s in data["statuses"]
        ]
    return data


class GitHubAPI:
    """The bridge's GitHub client (async, trio). Use as ``async with`` or
    call :meth:`aclose` at the end.

    `metrics` receives every request's outcome and the rate limit (default:
    the Prometheus metrics of :mod:`datakit.bridges.github.metrics`);
    `transport` replaces the network in tests; `max_wait` bounds a
    rate-limit hold."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        user_agent: str | None = None,
        metrics: MetricsHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.metrics = metrics or MetricsHook()
        self.max_wait = max_wait
        self.rate_limit_remaining: int | None = None
        self._not_before = 0.0  # trio clock: no request before this
        self._kit = _Kit(
            token,
            base_url=base_url,
            user_agent=user_agent or f"datakit-github/{__version__}",
            timeout=timeout,
            http_cache=False,
            auto_retry=False,
            async_transport=transport,
            async_event_hooks={"response": [self._on_response]},
        )
        self._imports: dict[Repo, dict[str, _Page]] = {}
        self._items = _ItemCache()
        self._tags: dict[str, tuple[str, str]] = {}  # tag object -> (type, sha): immutable
        self._truncated: set[tuple[StatusId, str]] = set()

    async def __aenter__(self) -> GitHubAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._kit.aclose()

    # -- rate limits ---------------------------------------------------------

    async def _on_response(self, response: httpx.Response) -> None:
        """Every response: note the remaining rate limit and, when GitHub says
        stop (remaining 0, or 403/429 with Retry-After), hold later requests."""
        headers = response.headers
        remaining = headers.get("x-ratelimit-remaining", "")
        if remaining.isdigit():
            self.rate_limit_remaining = int(remaining)
            self.metrics.rate_limit(int(remaining))
        wait: float | None = None
        reset = headers.get("x-ratelimit-reset", "")
        if remaining == "0" and reset.isdigit():
            wait = int(reset) - time.time()
        if response.status_code in (403, 429):
            retry_after = headers.get("retry-after", "")
            if retry_after.isdigit():
                wait = max(wait or 0.0, float(retry_after))
            elif response.status_code == 429 and wait is None:
                wait = 60.0  # GitHub's advice without a header: at least a minute
        if wait is not None and wait > 0:
            wait = min(wait, self.max_wait)
            until = trio.current_time() + wait
            if until > self._not_before:
                self._not_before = until
                log.warning("GitHub rate limit reached: next request in %.0f s", wait)

    async def _wait_turn(self) -> None:
        delay = self._not_before - trio.current_time()
        if delay > 0:
            self.metrics.waited(delay)
            await trio.sleep_until(self._not_before)

    # -- one request ---------------------------------------------------------

    async def _call(
        self,
        call: str,
        request: Callable[[], Awaitable[Response[Any]]],
        what: str,
        read: Callable[[Response[Any]], T],
    ) -> T:
        """One request, after any rate-limit hold, and `read` applied to its
        response; every failure (HTTP, network, a body that is not JSON or
        that githubkit's models reject) becomes a GitHubError, and each
        request is counted once by outcome."""
        await self._wait_turn()
        try:
            response = await request()
        except RequestFailed as e:
            status = e.response.status_code
            if isinstance(e, RateLimitExceeded) or status == 429:
                outcome = "rate_limited"
            else:
                outcome = "client_error" if status < 500 else "server_error"
            self.metrics.call(call, outcome)
            reason = e.response.raw_response.reason_phrase
            detail = _error_detail(e.response.raw_response)
            message = f"{what}: {status} {reason}" + (f": {detail}" if detail else "")
            raise GitHubError(_one_line(message), status) from None
        except RequestError as e:
            self.metrics.call(call, "network_error")
            cause = e.exc
            raise GitHubError(
                _one_line(f"{what}: {type(cause).__name__}: {cause or 'no answer'}")
            ) from None
        except (GitHubException, ValidationError, ValueError) as e:
            # githubkit refused our request body (it validates them)
            self.metrics.call(call, "client_error")
            raise GitHubError(_one_line(f"{what}: bad request: {e}")) from None
        try:
            result = read(response)
        except (ValidationError, ValueError, TypeError, KeyError) as e:
            self.metrics.call(call, "invalid_response")
            first = str(e).splitlines()[:3]
            message = f"{what}: unexpected response: {' '.join(first)}"
            raise GitHubError(_one_line(message)) from None
        self.metrics.call(call, "not_modified" if response.status_code == 304 else "ok")
        log.debug("%s: %d", what, response.status_code)
        return result

    async def _pages(
        self,
        cache: _Fetch,
        call: str,
        path: str,
        params: Mapping[str, str | int],
        parse: Callable[[Any], list[T]],
        empty_on: int | None = None,
    ) -> list[T]:
        """All pages of a GET list, with conditional requests: a page whose
        ETag still matches (304) is taken from `cache` with its next link.
        An `empty_on` answer to the first page means an empty list (GitHub's
        409 "Git Repository is empty." for refs); it counts as a change only
        when the last answer was not the same."""
        items: list[T] = []
        first = path + "?" + urlencode(params) if params else path
        url: str | None = first
        seen: set[str] = set()
        while url is not None and url not in seen:
            seen.add(url)
            known = cache.get(url)
            headers = {"If-None-Match": known.etag} if known and known.etag else {}
            what = f"GET {httpx.URL(url).path}"
            try:
                fresh = await self._call(
                    call, partial(self._kit.arequest, "GET", url, headers=headers), what,
                    partial(_read_page, parse, known),
                )
            except GitHubError as e:
                if empty_on is None or e.status != empty_on or url != first:
                    raise
                empty = _Page(None, [], None)
                cache.changed |= known != empty
                cache.put(url, empty)
                return []
            page = fresh or known  # None: a 304, the last answer stands
            assert page is not None
            cache.changed |= fresh is not None
            cache.put(url, page)
            items.extend(page.items)
            url = page.next_url
        return items

    async def _one(
        self, cache: _Fetch, call: str, path: str, parse: Callable[[Any], T]
    ) -> T | None:
        """A single GET (conditional); None on 404 (and 409, see below)."""
        pages = await self._pages_or_none(cache, call, path, lambda d: [parse(d)])
        return pages[0] if pages else None

    async def _pages_or_none(
        self, cache: _Fetch, call: str, path: str, parse: Callable[[Any], list[T]]
    ) -> list[T] | None:
        try:
            return await self._pages(cache, call, path, {}, parse)
        except GitHubError as e:
            if e.status in (404, 409):  # 409: an empty repository has no refs
                return None
            raise

    # -- import (§3.3) -------------------------------------------------------

    @staticmethod
    def _repo_path(repo: Repo) -> str:
        return f"/repos/{quote(repo.user, safe='')}/{quote(repo.name, safe='')}"

    async def import_repo(self, repo: Repo, *, if_changed: bool = True) -> Snapshot | None:
        """Everything the bridge imports about `repo`: open PRs with their
        comments, heads and tags (annotated tags peeled one level, refs to
        other objects dropped), and the combined statuses of every PR or ref
        head. None when every request answered 304 (nothing changed since
        this object's last import of `repo`), unless `if_changed` is False."""
        fetch = _Fetch(self._imports.get(repo, {}))
        base = self._repo_path(repo)
        prs = [
            await self._with_comments(fetch, repo, raw)
            for raw in await self._pages(
                fetch, "pulls", f"{base}/pulls", {"state": "open", "per_page": PER_PAGE},
                lambda d: type_validate_python(list[PullRequestSimple], d),
            )
            if raw.state == "open"
        ]
        refs: list[Ref] = []
        for prefix in ("heads", "tags"):
            raws = await self._pages(
                fetch, "refs", f"{base}/git/matching-refs/{prefix}", {"per_page": PER_PAGE},
                lambda d: type_validate_python(list[GitRef], d), empty_on=409,
            )
            for raw in raws:
                ref = await self._peel(repo, raw)
                if ref is not None:
                    refs.append(ref)
        heads = sorted({pr.head for pr in prs} | {ref.head for ref in refs})
        statuses: list[Status] = []
        for sha in heads:
            statuses.extend(await self._statuses(fetch, repo, sha))
        self._imports[repo] = fetch.used
        if if_changed and not fetch.changed:
            log.debug("%s: unchanged (every request answered 304)", repo)
            return None
        return Snapshot(
            repos=frozenset({repo}),
            prs=frozenset(prs),
            refs=frozenset(refs),
            statuses=frozenset(statuses),
        )

    def _pr(self, repo: Repo, raw: PullRequestSimple | PullRequest,
            comments: tuple[Comment, ...]) -> PR:
        owner = _login(raw.user)
        return PR(
            repo=repo,
            number=raw.number,
            head=raw.head.sha,
            state=PRState.OPEN if raw.state == "open" else PRState.CLOSED,
            title=raw.title,
            base=raw.base.ref,
            owner=owner,
            comments=(Comment(0, owner, raw.body or ""), *comments),
        )

    async def _comments(self, cache: _Fetch, repo: Repo, number: int) -> tuple[Comment, ...]:
        raws = await self._pages(
            cache, "comments", f"{self._repo_path(repo)}/issues/{number}/comments",
            {"per_page": PER_PAGE}, lambda d: type_validate_python(list[IssueComment], d),
        )
        return tuple(Comment(c.id, _login(c.user), c.body or "") for c in raws)

    async def _with_comments(
        self, cache: _Fetch, repo: Repo, raw: PullRequestSimple | PullRequest
    ) -> PR:
        return self._pr(repo, raw, await self._comments(cache, repo, raw.number))

    async def _peel(self, repo: Repo, raw: GitRef) -> Ref | None:
        """A ref to a commit as is; to an annotated tag, the tag's target if
        that is a commit (one level, #257); anything else dropped."""
        kind, sha = raw.object_.type, raw.object_.sha
        if kind == "tag":
            if sha not in self._tags:
                path = f"{self._repo_path(repo)}/git/tags/{sha}"
                what = f"GET {path}"
                tag = await self._call(
                    "tag", partial(self._kit.arequest, "GET", path), what, _reader(GitTag)
                )
                self._tags[sha] = (tag.object_.type, tag.object_.sha)
            kind, sha = self._tags[sha]
        if kind != "commit":
            log.debug("%s: %s points to a %s: not imported", repo, raw.ref, kind)
            return None
        return Ref(repo, _ref_name(raw.ref), sha)

    async def _statuses(self, cache: _Fetch, repo: Repo, sha: str) -> list[Status]:
        raws = await self._pages(
            cache, "statuses", f"{self._repo_path(repo)}/commits/{sha}/status",
            {"per_page": PER_PAGE},
            lambda d: type_validate_python(CombinedCommitStatus, _default_contexts(d)).statuses,
        )
        return [
            Status(
                repo=repo,
                commit=sha,
                context=context_of(s.context),
                state=_status_state(s.state),
                description=s.description or None,
                target_url=s.target_url or None,
            )
            for s in raws
        ]

    # -- single items (for .dirty and webhooks) ------------------------------

    async def pr(self, repo: Repo, number: int) -> PR | None:
        """PR `number` with its comments if it is open; None if closed or unknown."""
        raw = await self._one(
            self._items, "pull", f"{self._repo_path(repo)}/pulls/{number}",
            lambda d: type_validate_python(PullRequest, d),
        )
        if raw is None or raw.state != "open":
            return None
        return await self._with_comments(self._items, repo, raw)

    async def with_comments(self, pr: PR) -> PR:
        """`pr` (from a webhook: only comment 0, its body) with its comments
        fetched from GitHub."""
        first = pr.comments[0] if pr.comments else Comment(0, pr.owner, "")
        return replace(pr, comments=(first, *await self._comments(self._items, pr.repo, pr.number)))

    async def ref(self, repo: Repo, name: tuple[str, ...]) -> Ref | None:
        """Ref `name` (``("heads", "master")``), peeled; None if absent or not
        a commit."""
        path = f"{self._repo_path(repo)}/git/ref/" + "/".join(quote(p, safe="") for p in name)
        raw = await self._one(self._items, "ref", path, lambda d: type_validate_python(GitRef, d))
        return None if raw is None else await self._peel(repo, raw)

    async def statuses(self, repo: Repo, sha: str) -> list[Status]:
        """The combined status of commit `sha`: the latest status per context."""
        return await self._statuses(self._items, repo, sha)

    # -- export (§3.4) -------------------------------------------------------

    async def set_status(self, status: Status) -> Status:
        """POST the status; returns it as GitHub stored it (the description
        truncated to 140 characters, logged once per status and text)."""
        description = status.description
        if description is not None and len(description) > DESCRIPTION_LIMIT:
            key = (status.id, description)
            if key not in self._truncated:
                if len(self._truncated) > 10000:
                    self._truncated.clear()
                self._truncated.add(key)
                log.warning("%s: description of %d characters cut to %d for GitHub",
                            status.id, len(description), DESCRIPTION_LIMIT)
            description = truncate_description(description)
        body: dict[str, Any] = {"state": status.state.value, "context": status.context_str}
        if description is not None:
            body["description"] = description
        if status.target_url is not None:
            body["target_url"] = status.target_url
        what = f"POST {self._repo_path(status.repo)}/statuses/{status.commit}"
        sent = await self._call(
            "set_status",
            lambda: self._kit.rest.repos.async_create_commit_status(
                status.repo.user, status.repo.name, status.commit, data=cast(Any, body)
            ),
            what,
            _reader(GitHubStatus),
        )
        return replace(
            status,
            context=context_of(sent.context),
            state=_status_state(sent.state),
            description=sent.description or None,
            target_url=sent.target_url or None,
        )

    async def set_pr(self, pr: PR) -> PR:
        """PATCH the PR's title, state and base (never its body); returns the
        PR as GitHub now holds it, with `pr`'s comments."""
        what = f"PATCH {self._repo_path(pr.repo)}/pulls/{pr.number}"
        raw = await self._call(
            "set_pr",
            lambda: self._kit.rest.pulls.async_update(
                pr.repo.user, pr.repo.name, pr.number,
                title=pr.title, state=pr.state.value, base=pr.base,  # type: ignore[arg-type]
            ),
            what,
            _reader(PullRequest),
        )
        return replace(self._pr(pr.repo, raw, ()), comments=pr.comments)

    # -- webhooks (§3.7) -----------------------------------------------------

    async def ensure_hook(self, repo: Repo, url: str, secret: str | bytes) -> int:
        """Make GitHub send `repo`'s events to `url`, signed with `secret`:
        PATCH the hook already pointing at `url` (GitHub never shows a hook's
        secret, so it is always rewritten) or create one. Returns its id."""
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8")
        base = self._repo_path(repo)
        hooks = await self._pages(
            _Fetch({}), "hooks", f"{base}/hooks", {"per_page": PER_PAGE},
            lambda d: type_validate_python(list[Hook], d),
        )
        config = {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"}
        existing = next((h for h in hooks if h.config.url == url), None)
        if existing is not None:
            what = f"PATCH {base}/hooks/{existing.id}"
            await self._call(
                "update_hook",
                lambda: self._kit.rest.repos.async_update_webhook(
                    repo.user, repo.name, existing.id,
                    data=cast(Any, {"config": config, "events": HOOK_EVENTS, "active": True}),
                ),
                what,
                _ignore,
            )
            log.info("%s: web hook %d updated for %s", repo, existing.id, url)
            return existing.id
        what = f"POST {base}/hooks"
        hook = await self._call(
            "create_hook",
            lambda: self._kit.rest.repos.async_create_webhook(
                repo.user, repo.name,
                data=cast(Any, {"name": "web", "active": True, "events": HOOK_EVENTS,
                                "config": config}),
            ),
            what,
            _reader(Hook),
        )
        log.info("%s: web hook %d created for %s", repo, hook.id, url)
        return hook.id
