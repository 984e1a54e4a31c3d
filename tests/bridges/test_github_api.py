"""GitHubAPI against a scripted GitHub (httpx.MockTransport): mapping to the
model, pagination, peeled tags, conditional requests, error mapping, rate
limits, and the export calls' bodies. The stateful fake GitHub covers the
same calls end to end (test_github_api_fake.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

from datakit.bridges.github.api import GitHubAPI, GitHubError, truncate_description
from datakit.bridges.github.metrics import MetricsHook
from datakit.github.model import (
    PR,
    Comment,
    PRState,
    Ref,
    Repo,
    Status,
    StatusState,
)
from tests.bridges import ghshapes as shapes

REPO = Repo("u", "r")
C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40
T9, TREE = "9" * 40, "e" * 40


class RecordingMetrics(MetricsHook):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.remaining: list[int] = []
        self.waits: list[float] = []

    def call(self, call: str, outcome: str) -> None:
        self.calls.append((call, outcome))
        super().call(call, outcome)

    def rate_limit(self, remaining: int) -> None:
        self.remaining.append(remaining)

    def waited(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Scripted:
    """A GitHub made of path -> body (JSON), with ETags and a request log.
    `override` answers a path with a response of its own (errors)."""

    bodies: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    override: dict[str, Callable[[httpx.Request], httpx.Response]] = field(default_factory=dict)
    log: list[tuple[str, str, int, float]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        page = request.url.params.get("page")
        key = f"{path}?page={page}" if page else path
        response = self._answer(request, key)
        self.log.append((request.method, key, response.status_code, trio.current_time()))
        return response

    def _answer(self, request: httpx.Request, key: str) -> httpx.Response:
        if key in self.override:
            return self.override[key](request)
        if request.method != "GET":
            return httpx.Response(404, json={"message": "Not Found"})
        if key not in self.bodies:
            return httpx.Response(404, json={"message": "Not Found"})
        raw = json.dumps(self.bodies[key]).encode()
        etag = f'"{hash(raw) & 0xFFFFFFFF:x}"'
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers={"ETag": etag})
        headers = {"ETag": etag, "X-RateLimit-Remaining": "4999"}
        if key in self.links:
            headers["Link"] = f'<{self.links[key]}>; rel="next"'
        return httpx.Response(200, content=raw, headers=headers)

    def api(self, metrics: MetricsHook | None = None, **kw: Any) -> GitHubAPI:
        return GitHubAPI(
            "http://gh.test/api/", "tok", metrics=metrics,
            transport=httpx.MockTransport(self.handler), **kw,
        )


def sample_repo() -> Scripted:
    """BR-2/4/5's repository: PR #3 with a paged comment list, heads and
    tags including an annotated tag and refs to non-commits, statuses."""
    s = Scripted()
    base = "/api/repos/u/r"
    s.bodies[f"{base}/pulls"] = [
        shapes.pull(3, C3, title="Fix", owner="alice", body="why"),
    ]
    s.bodies[f"{base}/issues/3/comments"] = [shapes.comment(7, "bob", "ok")]
    s.links[f"{base}/issues/3/comments"] = (
        "http://gh.test/api/repos/u/r/issues/3/comments?per_page=100&page=2"
    )
    s.bodies[f"{base}/issues/3/comments?page=2"] = [shapes.comment(8, "carol", "more")]
    s.bodies[f"{base}/git/matching-refs/heads"] = [
        shapes.ref("refs/heads/master", C1),
        shapes.ref("refs/heads/feature/x", C2),
    ]
    s.bodies[f"{base}/git/matching-refs/tags"] = [
        shapes.ref("refs/tags/v1", C1),
        shapes.ref("refs/tags/v2", T9, "tag"),
        shapes.ref("refs/tags/tree", TREE, "tag"),
        shapes.ref("refs/tags/blob", "b" * 40, "blob"),
    ]
    s.bodies[f"{base}/git/tags/{T9}"] = shapes.tag(T9, C2)
    s.bodies[f"{base}/git/tags/{TREE}"] = shapes.tag(TREE, "f" * 40, "tree")
    s.bodies[f"{base}/commits/{C1}/status"] = shapes.combined(C1, [
        shapes.simple_status("ci/circleci", "success", "Passed", "http://ci/1"),
        shapes.simple_status(None, "pending"),
    ])
    s.bodies[f"{base}/commits/{C2}/status"] = shapes.combined(C2, [])
    s.bodies[f"{base}/commits/{C3}/status"] = shapes.combined(C3, [
        shapes.simple_status("ci/datakit/test", "weird"),
    ])
    return s


async def test_import_maps_prs_comments_refs_and_statuses() -> None:
    s = sample_repo()
    async with s.api() as api:
        snap = await api.import_repo(REPO)
    assert snap is not None
    assert snap.prs == {
        PR(REPO, 3, C3, PRState.OPEN, "Fix", "master", "alice", (
            Comment(0, "alice", "why"), Comment(7, "bob", "ok"), Comment(8, "carol", "more"),
        )),
    }
    assert snap.refs == {
        Ref(REPO, ("heads", "master"), C1),
        Ref(REPO, ("heads", "feature", "x"), C2),
        Ref(REPO, ("tags", "v1"), C1),
        Ref(REPO, ("tags", "v2"), C2),  # peeled: never the tag object T9
    }
    assert snap.statuses == {
        Status(REPO, C1, ("ci", "circleci"), StatusState.SUCCESS, "Passed", "http://ci/1"),
        Status(REPO, C1, ("default",), StatusState.PENDING),
        Status(REPO, C3, ("ci", "datakit", "test"), StatusState.FAILURE),  # unknown -> failure
    }
    assert snap.repos == {REPO}
    sent = s.requests[0]
    assert sent.headers["user-agent"].startswith("datakit-github/")
    assert sent.headers["authorization"] == "token tok"
    assert sent.url.params["state"] == "open"


async def test_unchanged_repository_costs_only_304s() -> None:
    s = sample_repo()
    async with s.api() as api:
        assert await api.import_repo(REPO) is not None
        first = len(s.log)
        assert await api.import_repo(REPO) is None
        again = s.log[first:]
        assert again and all(status == 304 for _, _, status, _ in again)
        # annotated tags are immutable: not fetched again
        assert not any("/git/tags/" in key for _, key, _, _ in again)
        full = await api.import_repo(REPO, if_changed=False)
        assert full is not None and len(full.refs) == 4 and len(full.prs) == 1
        # one change answers 200: a snapshot again, with the change
        s.bodies["/api/repos/u/r/issues/3/comments?page=2"] = [shapes.comment(8, "carol", "edit")]
        snap = await api.import_repo(REPO)
        assert snap is not None
        (pr,) = snap.prs
        assert pr.comments[-1] == Comment(8, "carol", "edit")


async def test_a_failed_import_does_not_make_the_next_one_look_unchanged() -> None:
    s = sample_repo()
    async with s.api() as api:
        await api.import_repo(REPO)
        s.bodies["/api/repos/u/r/pulls"][0]["title"] = "New"
        s.override[f"/api/repos/u/r/commits/{C1}/status"] = lambda r: httpx.Response(502)
        with pytest.raises(GitHubError):
            await api.import_repo(REPO)
        del s.override[f"/api/repos/u/r/commits/{C1}/status"]
        snap = await api.import_repo(REPO)
        assert snap is not None
        assert {pr.title for pr in snap.prs} == {"New"}


@pytest.mark.parametrize(
    ("response", "outcome", "text"),
    [
        (lambda r: httpx.Response(404, json={"message": "Not Found"}), "client_error",
         "404 Not Found: Not Found"),
        (lambda r: httpx.Response(502, text="<html>\nbad gateway\n</html>"), "server_error",
         "502 Bad Gateway"),
        (lambda r: httpx.Response(200, text="{not json"), "invalid_response",
         "unexpected response"),
        (lambda r: httpx.Response(200, json=[{"ref": 1}]), "invalid_response",
         "unexpected response"),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
         "network_error", "ConnectError: refused"),
    ],
)
async def test_every_failure_is_one_github_error(
    response: Callable[[httpx.Request], httpx.Response], outcome: str, text: str
) -> None:
    s = sample_repo()
    s.override["/api/repos/u/r/git/matching-refs/heads"] = response
    metrics = RecordingMetrics()
    async with s.api(metrics) as api:
        with pytest.raises(GitHubError) as info:
            await api.import_repo(REPO)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("GET /repos/u/r/git/matching-refs/heads")
    assert text in message
    assert [c for c in metrics.calls if c[0] == "refs"] == [("refs", outcome)]  # once
    assert ("pulls", "ok") in metrics.calls


async def test_single_items() -> None:
    s = sample_repo()
    base = "/api/repos/u/r"
    s.bodies[f"{base}/pulls/3"] = shapes.pull(3, C3, title="Fix", owner="alice", full=True)
    s.bodies[f"{base}/pulls/4"] = shapes.pull(4, C1, state="closed", full=True)
    s.bodies[f"{base}/git/ref/tags/v2"] = shapes.ref("refs/tags/v2", T9, "tag")
    s.bodies[f"{base}/git/ref/heads/feature/x"] = shapes.ref("refs/heads/feature/x", C2)
    async with s.api() as api:
        pr = await api.pr(REPO, 3)
        assert pr is not None and pr.title == "Fix"
        assert [c.id for c in pr.comments] == [0, 7, 8]
        assert await api.pr(REPO, 4) is None  # closed
        assert await api.pr(REPO, 5) is None  # unknown
        assert await api.ref(REPO, ("tags", "v2")) == Ref(REPO, ("tags", "v2"), C2)
        assert await api.ref(REPO, ("heads", "feature", "x")) == Ref(
            REPO, ("heads", "feature", "x"), C2
        )
        assert await api.ref(REPO, ("heads", "gone")) is None
        statuses = await api.statuses(REPO, C1)
        assert {st.context for st in statuses} == {("ci", "circleci"), ("default",)}
        hooked = PR(REPO, 3, C3, PRState.OPEN, "Fix", "master", "alice",
                    (Comment(0, "alice", "why"),))
        full = await api.with_comments(hooked)
        assert [c.id for c in full.comments] == [0, 7, 8]


async def test_set_status_body_and_truncation(caplog: pytest.LogCaptureFixture) -> None:
    s = Scripted()
    sent: list[dict[str, Any]] = []

    def create(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        return httpx.Response(201, json=shapes.status(
            body["context"], body["state"], body.get("description"), body.get("target_url")))

    s.override[f"/api/repos/u/r/statuses/{C1}"] = create
    status = Status(REPO, C1, ("ci", "datakit", "test"), StatusState.PENDING, "Running",
                    "http://ci/x")
    async with s.api() as api:
        back = await api.set_status(status)
        assert back == status
        assert sent[-1] == {"state": "pending", "context": "ci/datakit/test",
                            "description": "Running", "target_url": "http://ci/x"}
        await api.set_status(Status(REPO, C1, ("default",), StatusState.ERROR))
        assert sent[-1] == {"state": "error", "context": "default"}
        long = Status(REPO, C1, ("ci", "datakit", "test"), StatusState.SUCCESS, "y" * 300)
        with caplog.at_level(logging.WARNING, logger="datakit.bridges.github.api"):
            back = await api.set_status(long)
            await api.set_status(long)
    description = sent[-1]["description"]
    assert len(description) == 140 and description.endswith("…")
    assert description == truncate_description("y" * 300)
    assert back.description == description
    assert sum("cut to 140" in r.getMessage() for r in caplog.records) == 1


async def test_set_pr_patches_title_state_base() -> None:
    s = Scripted()
    sent: list[dict[str, Any]] = []

    def patch(request: httpx.Request) -> httpx.Response:
        assert request.method == "PATCH"
        body = json.loads(request.content)
        sent.append(body)
        return httpx.Response(200, json=shapes.pull(
            3, C3, title=body["title"], state=body["state"], base=body["base"], full=True,
            owner="alice"))

    s.override["/api/repos/u/r/pulls/3"] = patch
    comments = (Comment(0, "alice", "why"), Comment(7, "bob", "ok"))
    pr = PR(REPO, 3, C3, PRState.CLOSED, "New", "develop", "alice", comments)
    async with s.api() as api:
        back = await api.set_pr(pr)
    assert sent == [{"title": "New", "state": "closed", "base": "develop"}]
    assert back == pr


async def test_ensure_hook_creates_then_patches() -> None:
    s = Scripted()
    hooks: list[dict[str, Any]] = []
    bodies: list[tuple[str, dict[str, Any]]] = []

    def collection(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=hooks)
        body = json.loads(request.content)
        bodies.append(("POST", body))
        hooks.append(shapes.hook(11, body["config"]["url"]))
        return httpx.Response(201, json=hooks[-1])

    def one(request: httpx.Request) -> httpx.Response:
        bodies.append((request.method, json.loads(request.content)))
        return httpx.Response(200, json=hooks[0])

    s.override["/api/repos/u/r/hooks"] = collection
    s.override["/api/repos/u/r/hooks/11"] = one
    async with s.api() as api:
        assert await api.ensure_hook(REPO, "http://h/hook", b"s1") == 11
        assert await api.ensure_hook(REPO, "http://h/hook", "s2") == 11
    (m1, created), (m2, patched) = bodies
    assert m1 == "POST" and m2 == "PATCH"
    assert created["name"] == "web" and created["active"] is True
    assert sorted(created["events"]) == ["create", "delete", "pull_request", "push", "status"]
    assert created["config"]["content_type"] == "json"
    assert created["config"]["secret"] == "s1"
    assert patched["config"]["secret"] == "s2"
    assert sorted(patched["events"]) == sorted(created["events"])


async def test_rate_limit_holds_the_next_request(autojump_clock: trio.abc.Clock) -> None:
    s = sample_repo()
    reset = int(time.time()) + 30
    limited = {"n": 0}

    def refuse(request: httpx.Request) -> httpx.Response:
        limited["n"] += 1
        return httpx.Response(
            403,
            json={"message": "API rate limit exceeded"},
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        )

    s.override["/api/repos/u/r/pulls"] = refuse
    metrics = RecordingMetrics()
    async with s.api(metrics) as api:
        started = trio.current_time()
        wall = time.time()
        with pytest.raises(GitHubError, match="403"):
            await api.import_repo(REPO)
        assert api.rate_limit_remaining == 0
        del s.override["/api/repos/u/r/pulls"]
        assert await api.import_repo(REPO) is not None
    assert limited["n"] == 1  # never retried in a loop
    second = [t for _, key, _, t in s.log][1]
    assert second - started >= (reset - wall) - 1
    assert ("pulls", "rate_limited") in metrics.calls
    assert metrics.waits and metrics.remaining[0] == 0


async def test_retry_after_holds_the_next_request(autojump_clock: trio.abc.Clock) -> None:
    s = sample_repo()
    s.override["/api/repos/u/r/pulls"] = lambda r: httpx.Response(
        429, json={"message": "secondary rate limit"}, headers={"Retry-After": "120"})
    async with s.api(max_wait=60) as api:
        with pytest.raises(GitHubError, match="429"):
            await api.import_repo(REPO)
        first = trio.current_time()
        del s.override["/api/repos/u/r/pulls"]
        await api.import_repo(REPO)
    times = [t for _, _, _, t in s.log]
    assert times[1] - first >= 60 - 0.01  # Retry-After 120, bounded by max_wait
    assert times[1] - first < 120


async def test_real_sockets_under_trio() -> None:
    """githubkit over httpx over a real TCP connection, under trio: a tiny
    Starlette app on Hypercorn's trio worker answers one endpoint."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from datakit.bridges.github.webhooks import serve

    seen: list[str] = []

    async def status(request: Request) -> JSONResponse:
        seen.append(request.headers["user-agent"])
        return JSONResponse(shapes.combined(C1, [shapes.simple_status("ci/a", "success")]))

    app = Starlette(routes=[Route("/repos/u/r/commits/{sha}/status", status)])
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(serve, app, "127.0.0.1", 0)
        async with GitHubAPI(url + "/", None, user_agent="datakit-github/test") as api:
            statuses = await api.statuses(REPO, C1)
        nursery.cancel_scope.cancel()
    assert [st.context for st in statuses] == [("ci", "a")]
    assert seen == ["datakit-github/test"]
