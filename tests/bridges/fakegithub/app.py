"""The fake's REST API: request in, response out, independent of the transport.

Routes are the calls of spec bridges.md §3.3-3.8.  Around every route, in
GitHub's order: token check (401), injected failures (502 ...), injected rate
limit (403), then the handler; GET answers carry an ETag and honour
`If-None-Match` (304, not counted against the rate limit); every answer
carries `X-RateLimit-*`.  Lists paginate with `per_page`/`page` and `Link`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.bridges.fakegithub.control import RATE_LIMIT, FakeGitHub, RequestRecord
from tests.bridges.fakegithub.remote import CONTROL_PREFIX, control_call
from tests.bridges.fakegithub.shapes import Json
from tests.bridges.fakegithub.state import Repo, StateError, not_found

REST_DOC = "https://docs.github.com/rest"


@dataclass
class Request:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class Reply:
    """What a route returns: a JSON body, its status and extra headers."""

    def __init__(self, body: Any, status: int = 200,
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.body = body
        self.status = status
        self.headers = headers or []


Route = Callable[["Call"], Reply]


@dataclass
class Call:
    """A request being handled: parsed path parameters, query and JSON body."""

    api: Api
    rec: RequestRecord
    params: dict[str, str]

    @property
    def repo(self) -> Repo:
        return self.api.fake.state.repo(f"{self.params['owner']}/{self.params['repo']}")

    def json(self) -> Json:
        body = self.rec.body
        if not isinstance(body, dict):
            raise StateError(400, "Problems parsing JSON", None, REST_DOC)
        return body

    def page(self, items: list[Json]) -> Reply:
        """One page of `items` with GitHub's `Link` header (first/prev/next/last)."""
        q = self.rec.query
        try:
            per_page = max(1, min(100, int(q.get("per_page", "30"))))
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            per_page, page = 30, 1
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def url(n: int) -> str:
            query = {**q, "per_page": str(per_page), "page": str(n)}
            return f"{self.api.fake.base_url}{self.rec.path}?{urllib.parse.urlencode(query)}"

        if page > 1:
            links.append(f'<{url(page - 1)}>; rel="prev"')
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links.append(f'<{url(1)}>; rel="first"')
        return Reply(chunk, headers=[("Link", ", ".join(links))] if links else [])


class Api:
    """Routes requests to the fake's state (under its lock)."""

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self._request_ids = itertools.count(1)
        repo = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Route]] = [
            (m, re.compile(repo + p), f) for m, p, f in [
                ("GET", r"", self.get_repo),
                ("GET", r"/pulls", self.list_pulls),
                ("GET", r"/pulls/(?P<n>\d+)", self.get_pull),
                ("PATCH", r"/pulls/(?P<n>\d+)", self.patch_pull),
                ("GET", r"/issues/(?P<n>\d+)/comments", self.list_comments),
                ("GET", r"/git/refs(?:/(?P<prefix>.*))?", self.get_refs),
                ("GET", r"/git/matching-refs/(?P<prefix>.*)", self.matching_refs),
                ("GET", r"/git/ref/(?P<name>.+)", self.get_ref),
                ("GET", r"/git/tags/(?P<sha>[^/]+)", self.get_tag),
                ("GET", r"/commits/(?P<ref>.+)/status", self.combined_status),
                ("GET", r"/commits/(?P<ref>.+)/statuses", self.list_statuses),
                ("POST", r"/statuses/(?P<sha>[^/]+)", self.create_status),
                ("GET", r"/hooks", self.list_hooks),
                ("POST", r"/hooks", self.create_hook),
                ("GET", r"/hooks/(?P<id>\d+)", self.get_hook),
                ("PATCH", r"/hooks/(?P<id>\d+)", self.patch_hook),
                ("DELETE", r"/hooks/(?P<id>\d+)", self.delete_hook),
            ]
        ]
        self.routes.append(("GET", re.compile(r"/rate_limit"), self.get_rate_limit))

    # -- the pipeline ------------------------------------------------------------

    def handle(self, req: Request) -> Response | None:
        """The answer, or None to drop the connection without one."""
        split = urllib.parse.urlsplit(req.target)
        path = urllib.parse.unquote(split.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        try:
            body = json.loads(req.body) if req.body else None
        except ValueError:
            body = req.body
        if path.startswith(CONTROL_PREFIX) and self.fake.network is None:
            status, doc = control_call(self.fake, req.method, path[len(CONTROL_PREFIX):], body)
            return Response(status, json.dumps(doc).encode(),
                            [("Content-Type", "application/json")])
        rec = RequestRecord(req.method.upper(), path, query, dict(req.headers), body,
                            time.time())
        with self.fake.lock:
            self.fake._record(rec)
            if self.fake.network == "close":
                return None
            resp = self._answer(req, rec)
            rec.status = resp.status
            return resp

    def _answer(self, req: Request, rec: RequestRecord) -> Response:
        fake = self.fake
        if fake.token is not None:
            scheme, _, token = req.headers.get("authorization", "").partition(" ")
            if scheme.lower() not in ("token", "bearer") or token.strip() != fake.token:
                return self._json(401, {"message": "Bad credentials",
                                        "documentation_url": REST_DOC, "status": "401"})
        failure = fake._take_failure(rec.method, rec.path)
        if failure is not None:
            status, retry_after = failure
            extra = [("Retry-After", str(retry_after))] if retry_after is not None else []
            message = "Server Error" if status >= 500 else (
                "You have exceeded a secondary rate limit. Please wait a few minutes "
                "before you try again.")
            return self._json(status, {"message": message, "documentation_url": REST_DOC},
                              extra)
        reset = fake._rate_limited(rec)
        if reset is not None:
            return self._json(403, {
                "message": "API rate limit exceeded for user ID 1. If you reach out to "
                           "GitHub Support for help, please include the request ID.",
                "documentation_url": "https://docs.github.com/rest/overview/"
                                     "rate-limits-for-the-rest-api",
                "status": "403"}, limit_reset=reset)
        try:
            reply = self._route(rec)
        except StateError as e:
            return self._json(e.status, fake.shapes.error(e.message, e.doc, e.errors,
                                                          e.status))
        raw = b"" if reply.status == 204 else json.dumps(reply.body).encode()
        headers = list(reply.headers)
        if rec.method == "GET" and reply.status == 200:
            etag = 'W/"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
            headers.append(("ETag", etag))
            headers.append(("Cache-Control", "private, max-age=60, s-maxage=60"))
            wanted = req.headers.get("if-none-match")
            if wanted is not None:
                fake.conditional[rec.path] += 1
                if etag in [t.strip() for t in wanted.split(",")] or wanted.strip() == "*":
                    fake.not_modified_count[rec.path] += 1
                    return Response(304, b"", headers + self._rate_headers(count=False))
        return self._json(reply.status, raw, headers)

    def _route(self, rec: RequestRecord) -> Reply:
        allowed = False
        for method, pattern, route in self.routes:
            m = pattern.fullmatch(rec.path)
            if m is None:
                continue
            allowed = True
            if method == rec.method:
                return route(Call(self, rec, {k: v for k, v in m.groupdict().items()
                                              if v is not None}))
        if allowed:
            raise StateError(404, "Not Found", None, REST_DOC)
        raise not_found()

    def _rate_headers(self, count: bool = True,
                      limit_reset: int | None = None) -> list[tuple[str, str]]:
        fake = self.fake
        now = time.time()
        if now >= fake.rate_window:
            fake.rate_window, fake.rate_used = int(now) + 3600, 0
        if count:
            fake.rate_used += 1
        remaining = max(0, RATE_LIMIT - fake.rate_used)
        reset = fake.rate_window
        if limit_reset is not None:
            remaining, reset = 0, limit_reset
        return [("X-RateLimit-Limit", str(RATE_LIMIT)), ("X-RateLimit-Remaining", str(remaining)),
                ("X-RateLimit-Reset", str(reset)), ("X-RateLimit-Used", str(fake.rate_used)),
                ("X-RateLimit-Resource", "core")]

    def _json(self, status: int, body: Any, headers: list[tuple[str, str]] | None = None,
              limit_reset: int | None = None) -> Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Response(status, raw, [
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-GitHub-Media-Type", "github.v3; format=json"),
            ("X-GitHub-Api-Version-Selected", "2022-11-28"),
            ("X-GitHub-Request-Id", f"FAKE:{next(self._request_ids):08X}"),
            *(headers or []), *self._rate_headers(limit_reset=limit_reset)])

    # -- routes ----------------------------------------------------------------------

    def get_rate_limit(self, call: Call) -> Reply:
        fake = self.fake
        core = {"limit": RATE_LIMIT, "used": fake.rate_used,
                "remaining": RATE_LIMIT - fake.rate_used, "reset": fake.rate_window}
        return Reply({"resources": {"core": core}, "rate": core})

    def get_repo(self, call: Call) -> Reply:
        return Reply(self.fake.shapes.repository(call.repo))

    def list_pulls(self, call: Call) -> Reply:
        r, want = call.repo, call.rec.query.get("state", "open")
        pulls = sorted((p for p in r.pulls.values() if want == "all" or p.state == want),
                       key=lambda p: p.number, reverse=True)
        return call.page([self.fake.shapes.pull(r, p, full=False) for p in pulls])

    def get_pull(self, call: Call) -> Reply:
        r = call.repo
        pr = r.pulls.get(int(call.params["n"]))
        if pr is None:
            raise not_found()
        return Reply(self.fake.shapes.pull(r, pr))

    def patch_pull(self, call: Call) -> Reply:
        r, body = call.repo, call.json()
        pr = self.fake._edit_pull(r, int(call.params["n"]), title=body.get("title"),
                                  body=body.get("body"), base=body.get("base"),
                                  state=body.get("state"), sender=r.owner)
        return Reply(self.fake.shapes.pull(r, pr))

    def list_comments(self, call: Call) -> Reply:
        r, n = call.repo, int(call.params["n"])
        if n not in r.pulls:
            raise not_found()
        return call.page([self.fake.shapes.comment(r, c) for c in r.comments.get(n, [])])

    def _refs(self, r: Repo, prefix: str) -> list[Json]:
        if not r.commits:
            raise StateError(409, "Git Repository is empty.", None,
                             "https://docs.github.com/rest/git/refs")
        return [self.fake.shapes.ref(r, name) for name in sorted(r.refs)
                if name.startswith(prefix)]

    def get_refs(self, call: Call) -> Reply:
        """`git/refs/heads` lists; `git/refs/heads/x` is the old single-ref form."""
        r, prefix = call.repo, call.params.get("prefix", "").strip("/")
        full = f"refs/{prefix}" if prefix else "refs/"
        self._refs(r, full)  # 409 on an empty repository
        if full in r.refs:
            return Reply(self.fake.shapes.ref(r, full))
        refs = self._refs(r, full.rstrip("/") + "/" if prefix else full)
        if not refs:
            raise not_found()
        return call.page(refs)

    def matching_refs(self, call: Call) -> Reply:
        r = call.repo
        return call.page(self._refs(r, f"refs/{call.params['prefix']}"))

    def get_ref(self, call: Call) -> Reply:
        r, name = call.repo, "refs/" + call.params["name"]
        self._refs(r, name)  # 409 on an empty repository
        if name not in r.refs:
            raise not_found()
        return Reply(self.fake.shapes.ref(r, name))

    def get_tag(self, call: Call) -> Reply:
        r = call.repo
        tag = r.tags.get(call.params["sha"])
        if tag is None:
            raise not_found()
        return Reply(self.fake.shapes.tag(r, tag))

    def _commit(self, r: Repo, ref: str) -> str:
        sha = r.resolve(ref)
        if sha is None:
            raise StateError(422, f"No commit found for SHA: {ref}", None,
                             "https://docs.github.com/rest/commits/statuses")
        return sha

    def combined_status(self, call: Call) -> Reply:
        r = call.repo
        sha = self._commit(r, call.params["ref"])
        state, latest = r.combined_state(sha)
        reply = call.page([self.fake.shapes.simple_status(r, s) for s in latest])
        body = self.fake.shapes.combined_status(r, sha, reply.body, state, len(latest))
        return Reply(body, headers=reply.headers)

    def list_statuses(self, call: Call) -> Reply:
        r = call.repo
        sha = self._commit(r, call.params["ref"])
        return call.page([self.fake.shapes.status(r, s)
                          for s in reversed(r.statuses.get(sha, []))])

    def create_status(self, call: Call) -> Reply:
        r, body = call.repo, call.json()
        st = self.fake._add_status(r, call.params["sha"], str(body.get("state")),
                                   body.get("context"), body.get("description"),
                                   body.get("target_url"), r.owner)
        return Reply(self.fake.shapes.status(r, st), 201,
                     [("Location", f"{self.fake.shapes.repo_url(r)}/statuses/{st.sha}")])

    def list_hooks(self, call: Call) -> Reply:
        r = call.repo
        return call.page([self.fake.shapes.hook(r, h) for h in r.hooks.values()])

    def _hook(self, call: Call) -> Any:
        hook = call.repo.hooks.get(int(call.params["id"]))
        if hook is None:
            raise not_found()
        return hook

    def get_hook(self, call: Call) -> Reply:
        return Reply(self.fake.shapes.hook(call.repo, self._hook(call)))

    def create_hook(self, call: Call) -> Reply:
        r, body = call.repo, call.json()
        config = body.get("config")
        doc = "https://docs.github.com/rest/repos/webhooks#create-a-repository-webhook"
        if not isinstance(config, dict) or not config.get("url"):
            raise StateError(422, "Validation Failed",
                             [{"resource": "Hook", "code": "custom",
                               "message": "Config must contain a URL"}], doc)
        if any(h.config.get("url") == config["url"] for h in r.hooks.values()):
            raise StateError(422, "Validation Failed",
                             [{"resource": "Hook", "code": "custom",
                               "message": "Hook already exists on this repository"}], doc)
        hook = self.fake._create_hook(r, str(body.get("name", "web")),
                                      {k: str(v) for k, v in config.items()},
                                      list(body.get("events", ["push"])),
                                      bool(body.get("active", True)), r.owner)
        return Reply(self.fake.shapes.hook(r, hook), 201,
                     [("Location", f"{self.fake.shapes.repo_url(r)}/hooks/{hook.id}")])

    def patch_hook(self, call: Call) -> Reply:
        hook, body = self._hook(call), call.json()
        if isinstance(body.get("config"), dict):
            hook.config.update({k: str(v) for k, v in body["config"].items()})
        if "events" in body:
            hook.events = list(body["events"])
        hook.events += [e for e in body.get("add_events", []) if e not in hook.events]
        hook.events = [e for e in hook.events if e not in body.get("remove_events", [])]
        if "active" in body:
            hook.active = bool(body["active"])
        hook.updated = time.time()
        return Reply(self.fake.shapes.hook(call.repo, hook))

    def delete_hook(self, call: Call) -> Reply:
        hook = self._hook(call)
        del call.repo.hooks[hook.id]
        return Reply(None, 204)
