"""GitHubAPI and the webhook listener against the stateful fake GitHub
(tests/bridges/fakegithub): real HTTP both ways, GitHub's JSON shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import trio

from datakit.bridges.github.api import GitHubAPI, GitHubError
from datakit.bridges.github.webhooks import (
    PRUpdatedNoComments,
    make_app,
    serve,
)
from datakit.github.model import (
    PR,
    Comment,
    Event,
    PRState,
    Ref,
    RefId,
    RefRemoved,
    RefUpdated,
    Repo,
    Status,
    StatusState,
    StatusUpdated,
)
from tests.bridges.fakegithub import FakeGitHub, running_fake

REPO = Repo("u", "r")


def api_for(fake: FakeGitHub, token: str | None = None) -> GitHubAPI:
    return GitHubAPI(fake.base_url + "/", token)


def populate(fake: FakeGitHub) -> dict[str, str]:
    """BR-2/4/5's repository, with enough branches for two pages."""
    c1 = fake.push("u/r", "master")
    c2 = fake.push("u/r", "heads/feature/x")
    fake.tag("u/r", "v1", c1)
    t9 = fake.tag("u/r", "v2", c2, annotated=True)
    for i in range(105):
        fake.push("u/r", f"heads/b{i:03}", c1)
    n = fake.open_pull("u/r", title="Fix", head="fix", user="alice", body="why")
    fake.add_comment("u/r", n, "ok", user="bob")
    fake.add_status("u/r", c1, "success", "ci/circleci", target_url="http://ci/1")
    fake.add_status("u/r", c1, "pending")
    pr_head = fake.pull("u/r", n).head_sha
    return {"c1": c1, "c2": c2, "t9": t9, "n": str(n), "pr": pr_head}


async def test_import_from_the_fake(fake_github: FakeGitHub) -> None:
    ids = populate(fake_github)
    async with api_for(fake_github) as api:
        snap = await api.import_repo(REPO)
    assert snap is not None
    (pr,) = snap.prs
    assert (pr.number, pr.head, pr.state, pr.title, pr.base, pr.owner) == (
        int(ids["n"]), ids["pr"], PRState.OPEN, "Fix", "master", "alice")
    assert pr.comments[0] == Comment(0, "alice", "why")
    assert [(c.user, c.body) for c in pr.comments[1:]] == [("bob", "ok")]
    refs = {r.name: r.head for r in snap.refs}
    assert refs[("heads", "master")] == ids["c1"]
    assert refs[("heads", "feature", "x")] == ids["c2"]
    assert refs[("tags", "v1")] == ids["c1"]
    assert refs[("tags", "v2")] == ids["c2"] != ids["t9"]
    assert len([n for n in refs if n[1].startswith("b")]) == 105  # two pages
    assert len(fake_github.requests("GET", "/repos/u/r/git/matching-refs/heads")) == 2
    c1 = {s.context: s for s in snap.statuses if s.commit == ids["c1"]}
    assert c1[("ci", "circleci")].state is StatusState.SUCCESS
    assert c1[("ci", "circleci")].target_url == "http://ci/1"
    assert c1[("default",)].state is StatusState.PENDING


async def test_an_empty_repository_has_no_refs(fake_github: FakeGitHub) -> None:
    """GitHub answers 409 to ref listings of a repository without commits."""
    async with api_for(fake_github) as api:
        snap = await api.import_repo(REPO)
        assert snap is not None and not snap.refs and not snap.prs
        assert await api.ref(REPO, ("heads", "master")) is None
        assert await api.import_repo(REPO) is None  # still empty: unchanged
        c1 = fake_github.push("u/r", "master")
        snap = await api.import_repo(REPO)
        assert snap is not None and snap.refs == {Ref(REPO, ("heads", "master"), c1)}


async def test_polling_an_unchanged_repository_costs_only_304s(fake_github: FakeGitHub) -> None:
    populate(fake_github)
    async with api_for(fake_github) as api:
        assert await api.import_repo(REPO) is not None
        fake_github.clear_requests()
        assert await api.import_repo(REPO) is None
        answered = [r.status for r in fake_github.requests()]
        assert answered and set(answered) == {304}
        assert fake_github.not_modified("/repos/u/r/pulls") == 1
        fake_github.retitle_pull("u/r", 1, "Renamed")
        snap = await api.import_repo(REPO)
        assert snap is not None and {pr.title for pr in snap.prs} == {"Renamed"}


async def test_export_and_single_items(fake_github: FakeGitHub) -> None:
    ids = populate(fake_github)
    n = int(ids["n"])
    async with api_for(fake_github) as api:
        status = Status(REPO, ids["c1"], ("ci", "datakit", "test"), StatusState.PENDING,
                        "Running", "http://ci/x")
        assert await api.set_status(status) == status
        (post,) = fake_github.requests("POST", f"/repos/u/r/statuses/{ids['c1']}")
        assert post.body == {"state": "pending", "context": "ci/datakit/test",
                             "description": "Running", "target_url": "http://ci/x"}
        # the fake answers 422 over 140 characters, like GitHub: we cut first
        long = Status(REPO, ids["c1"], ("ci", "datakit", "test"), StatusState.SUCCESS, "z" * 300)
        back = await api.set_status(long)
        assert back.description is not None and len(back.description) == 140
        stored = fake_github.combined_status("u/r", ids["c1"])[1]["ci/datakit/test"]
        assert stored.description == back.description and stored.state == "success"
        assert {s.context for s in await api.statuses(REPO, ids["c1"])} == {
            ("ci", "circleci"), ("default",), ("ci", "datakit", "test")}

        pr = await api.pr(REPO, n)
        assert pr is not None
        closed = await api.set_pr(PR(REPO, n, pr.head, PRState.CLOSED, "Bye", "master",
                                     pr.owner, pr.comments))
        assert closed.state is PRState.CLOSED and closed.title == "Bye"
        assert fake_github.pull("u/r", n).state == "closed"
        assert await api.pr(REPO, n) is None

        assert await api.ref(REPO, ("tags", "v2")) == Ref(REPO, ("tags", "v2"), ids["c2"])
        assert await api.ref(REPO, ("heads", "nope")) is None


async def test_errors_from_the_fake(fake_github: FakeGitHub) -> None:
    ids = populate(fake_github)
    status = Status(REPO, ids["c1"], ("ci", "a"), StatusState.SUCCESS)
    async with api_for(fake_github) as api:
        fake_github.fail("/repos/u/r/statuses/*", status=502)
        with pytest.raises(GitHubError, match="502"):
            await api.set_status(status)
        await api.set_status(status)  # recovered: the next step succeeds
        with pytest.raises(GitHubError, match="422") as info:
            await api.set_status(Status(REPO, "f" * 40, ("ci", "a"), StatusState.SUCCESS))
        assert "\n" not in str(info.value)
        await trio.to_thread.run_sync(fake_github.break_network, "refuse")
        try:
            with pytest.raises(GitHubError):
                await api.import_repo(REPO)
        finally:
            await trio.to_thread.run_sync(fake_github.heal_network)
        assert await api.import_repo(REPO) is not None


async def test_rate_limit_from_the_fake(fake_github: FakeGitHub) -> None:
    populate(fake_github)
    async with api_for(fake_github) as api:
        fake_github.rate_limit(seconds=2)
        with pytest.raises(GitHubError, match="403"):
            await api.import_repo(REPO)
        assert await api.import_repo(REPO) is not None
        reset = fake_github.rate_limit_reset()
    assert reset is not None and time.time() >= reset
    assert fake_github.requests_before_reset() == []


async def test_retry_after_from_the_fake(fake_github: FakeGitHub) -> None:
    populate(fake_github)
    async with api_for(fake_github) as api:
        fake_github.clear_requests()
        fake_github.fail("/repos/u/r/pulls", status=429, retry_after=1)
        with pytest.raises(GitHubError, match="429"):
            await api.import_repo(REPO)
        assert await api.import_repo(REPO) is not None
    refused, after = fake_github.requests()[:2]
    assert refused.status == 429 and after.status == 200
    assert after.time - refused.time >= 0.99


@pytest.fixture
def fake_with_token() -> Iterator[FakeGitHub]:
    with running_fake(token="sekrit") as fake:
        fake.create_repo("u/r")
        fake.push("u/r", "master")
        yield fake


async def test_token_is_sent(fake_with_token: FakeGitHub) -> None:
    async with api_for(fake_with_token) as anonymous:
        with pytest.raises(GitHubError, match="401"):
            await anonymous.import_repo(REPO)
    async with api_for(fake_with_token, "sekrit") as api:
        assert await api.import_repo(REPO) is not None


async def test_webhooks_from_the_fake(fake_github: FakeGitHub, nursery: trio.Nursery) -> None:
    """Hook registration, then the fake's signed deliveries reach the
    listener and come out as model events."""
    c1 = fake_github.push("u/r", "master")
    send, receive = trio.open_memory_channel[Event](100)
    app = make_app(b"hook-secret", "/hook", send)
    (url,) = await nursery.start(serve, app, "127.0.0.1", 0)
    async with api_for(fake_github) as api:
        hook_id = await api.ensure_hook(REPO, url + "/hook", b"hook-secret")
        assert await api.ensure_hook(REPO, url + "/hook", b"hook-secret") == hook_id
        (hook,) = fake_github.hooks("u/r")
        assert sorted(hook.events) == ["create", "delete", "pull_request", "push", "status"]
        assert hook.config["content_type"] == "json"

        async def next_event() -> Event:
            with trio.fail_after(10):
                return await receive.receive()

        c3 = await trio.to_thread.run_sync(lambda: fake_github.push("u/r", "master"))
        assert await next_event() == RefUpdated(Ref(REPO, ("heads", "master"), c3))
        await trio.to_thread.run_sync(lambda: fake_github.push("u/r", "heads/feature/x", c1))
        assert await next_event() == RefUpdated(Ref(REPO, ("heads", "feature", "x"), c1),
                                                created=True)
        await trio.to_thread.run_sync(lambda: fake_github.delete_ref("u/r", "heads/feature/x"))
        assert await next_event() == RefRemoved(RefId(REPO, ("heads", "feature", "x")))
        await trio.to_thread.run_sync(lambda: fake_github.add_status(
            "u/r", c3, "failure", "other/ci", description="red"))
        event = await next_event()
        assert isinstance(event, StatusUpdated)
        assert event.status == Status(REPO, c3, ("other", "ci"), StatusState.FAILURE, "red")

        n = await trio.to_thread.run_sync(lambda: fake_github.open_pull(
            "u/r", title="Hi", head="topic", body="text"))
        fake_github.add_comment("u/r", n, "first", user="bob")
        while isinstance(event := await next_event(), RefUpdated):
            pass  # the branch `topic` was pushed first
        assert isinstance(event, PRUpdatedNoComments)
        full = await api.with_comments(event.pr)
        assert [(c.user, c.body) for c in full.comments] == [("alice", "text"), ("bob", "first")]
        await trio.to_thread.run_sync(lambda: fake_github.close_pull("u/r", n))
        event = await next_event()
        assert isinstance(event, PRUpdatedNoComments) and event.pr.state is PRState.CLOSED

    deliveries = await trio.to_thread.run_sync(fake_github.wait_deliveries)
    codes = {(d.event, d.status) for d in deliveries}
    assert ("ping", 204) in codes and ("create", 204) in codes
    assert all(d.status in (204,) for d in deliveries), codes


async def test_a_wrong_secret_is_refused(fake_github: FakeGitHub, nursery: trio.Nursery) -> None:
    send, receive = trio.open_memory_channel[Event](10)
    (url,) = await nursery.start(serve, make_app(b"ours", "/hook", send), "127.0.0.1", 0)
    fake_github.create_hook("u/r", {"url": url + "/hook", "content_type": "json",
                                    "secret": "theirs"}, ["push"])
    await trio.to_thread.run_sync(lambda: fake_github.push("u/r", "master"))
    deliveries = await trio.to_thread.run_sync(fake_github.wait_deliveries)
    assert {d.status for d in deliveries} == {403}
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()
    # the fake's payloads are JSON GitHub would send: our signature check, not parsing, refused
    assert all(isinstance(json.loads(d.body), dict) for d in deliveries)


async def test_user_agent(fake_github: FakeGitHub) -> None:
    async with api_for(fake_github) as api:
        await api.import_repo(REPO)
    agents = {r.headers.get("user-agent") for r in fake_github.requests()}
    assert len(agents) == 1
    (agent,) = agents
    assert agent is not None and agent.startswith("datakit-github/")
    assert isinstance(httpx.URL(fake_github.base_url).port, int)
