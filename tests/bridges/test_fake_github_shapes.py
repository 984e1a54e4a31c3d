"""The fake GitHub does not drift from GitHub (spec bridges.md §5).

Its REST answers and webhook bodies are compared with recorded real ones:
`@octokit/fixtures` (exchanges with api.github.com) and
`@octokit/webhooks-examples` (webhook deliveries), installed from npm by
scripts/test into tests/bridges/.npm.  For every endpoint with a recording:
each key the fake sends exists in the recording with the same JSON type,
recursively; each key of the recording is sent by the fake, except the few
listed in UNSENT with the reason; and the fields the bridge reads are present
and non-null where GitHub's are.  Then githubkit, the bridge's client, parses
every answer and webhook into its typed models.  Without the recordings the
tests fail: a drift check that silently skips checks nothing.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bridges.fakegithub import FakeGitHub, running_fake
from tests.bridges.fakegithub.client import call, get

NPM = Path(__file__).resolve().parent / ".npm" / "node_modules" / "@octokit"
INSTALL = ("npm install --no-audit --no-fund --no-save --prefix tests/bridges/.npm "
           "@octokit/fixtures@23.1.2 @octokit/webhooks-examples@7.6.1")

# Keys the fake sends that the recordings lack, and why.
EXTRA = {
    "has_discussions": "repositories have it since 2022; githubkit's models require it",
    "auto_merge": "pull requests have it since 2020; githubkit's models require it",
    "active_lock_reason": "pull requests have it since 2020 (REST docs)",
    "performed_via_github_app": "issue comments have it since 2020 (REST docs)",
    "deliveries_url": "hooks have it since 2021 (REST docs)",
    "verified_at": "signature verifications have it since 2024 (REST docs)",
    "secret": "a hook's configured secret shows as ********; the recorded hooks have none",
    "message": "422 errors of code `custom` carry one; the recorded error is `invalid`",
}

# Keys GitHub sends that the fake leaves out, and why (nothing the bridge reads).
UNSENT = {
    "organization": "the recorded repository belongs to an organisation; ours to users",
    "custom_properties": "organisation repository properties",
    "security_and_analysis": "needs admin on a GitHub Advanced Security repository",
    "reactions": "emoji reactions on comments",
    "installation": "only for GitHub App deliveries",
    "enterprise": "only for GitHub Enterprise deliveries",
    "user_view_type": "a recent presentation hint on users",
    "app_id": "set only on hooks that a GitHub App created",
}


def _load(path: Path) -> Any:
    if not path.exists():
        pytest.fail(f"{path} is missing: the recorded GitHub exchanges are not installed "
                    f"(scripts/test installs them; by hand: {INSTALL})")
    return json.loads(path.read_text())


def scenario(name: str) -> list[dict[str, Any]]:
    """The recorded exchanges of one `@octokit/fixtures` scenario."""
    return list(_load(NPM / "fixtures" / "scenarios" / "api.github.com" / name
                      / "normalized-fixture.json"))


def recorded(name: str, method: str, path_end: str) -> Any:
    for exchange in scenario(name):
        if exchange["method"] == method.lower() and exchange["path"].split("?")[0].endswith(
                path_end):
            return exchange["response"]
    raise AssertionError(f"no {method} …{path_end} in fixture {name}")


def webhook_examples(event: str) -> list[dict[str, Any]]:
    for entry in _load(NPM / "webhooks-examples" / "api.github.com" / "index.json"):
        if entry["name"] == event:
            return list(entry["examples"])
    raise AssertionError(f"no webhook examples for {event}")


def union(docs: list[Any]) -> Any:
    """One document with every key that any of `docs` has, so that examples
    recorded years apart (GitHub adds fields) count as one shape."""
    docs = [d for d in docs if d is not None]
    if not docs:
        return None
    if all(isinstance(d, dict) for d in docs):
        keys = dict.fromkeys(k for d in docs for k in d)
        return {k: union([d[k] for d in docs if k in d]) for k in keys}
    if all(isinstance(d, list) for d in docs):
        items = [x for d in docs for x in d]
        return [union(items)] if items else []
    return docs[0]


def example(event: str, **match: Any) -> Any:
    """The union of the recorded `event` payloads whose top-level fields match."""
    found = [e for e in webhook_examples(event)
             if all(e.get(k) == v for k, v in match.items())]
    assert found, f"no {event} example with {match}"
    return union(found)


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def differences(fake: Any, real: Any, where: str = "$", *, all_keys: bool = True) -> list[str]:
    """How the fake's JSON differs from GitHub's: unknown keys, other types and
    (with `all_keys`) keys GitHub sends that the fake does not.  Null on either
    side matches any type (GitHub's nullable fields); arrays compare their
    first elements."""
    if fake is None or real is None:
        return []
    if json_type(fake) != json_type(real):
        return [f"{where}: {json_type(fake)} where GitHub has {json_type(real)}"]
    out: list[str] = []
    if isinstance(fake, dict):
        for key in fake:
            if key not in real and key not in EXTRA:
                out.append(f"{where}.{key}: not sent by GitHub")
            elif key in real:
                out += differences(fake[key], real[key], f"{where}.{key}", all_keys=all_keys)
        if all_keys:
            out += [f"{where}.{key}: sent by GitHub, missing" for key in real
                    if key not in fake and key not in UNSENT]
    elif isinstance(fake, list) and fake and real:
        out += differences(fake[0], real[0], f"{where}[0]", all_keys=all_keys)
    return out


def lookup(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[0] if isinstance(doc, list) else doc
        if not isinstance(doc, dict) or part not in doc:
            raise KeyError(path)
        doc = doc[part]
    return doc


def assert_same_shape(fake: Any, real: Any, reads: list[str], *, all_keys: bool = True) -> None:
    """`fake` has GitHub's shape, and every field in `reads` (the bridge's) is
    there, of GitHub's type, non-null where GitHub's is."""
    problems = differences(fake, real, all_keys=all_keys)
    for path in reads:
        try:
            ours = lookup(fake, path)
        except KeyError:
            problems.append(f"{path}: read by the bridge, missing")
            continue
        theirs = lookup(real, path)
        if theirs is not None and json_type(ours) != json_type(theirs):
            problems.append(f"{path}: read by the bridge, {json_type(ours)} where GitHub has "
                            f"{json_type(theirs)}")
    assert not problems, "\n".join(problems)


def test_differences_catch_drift() -> None:
    real = {"a": 1, "b": {"c": "x", "d": [{"e": True}]}, "organization": {}}
    assert differences({"a": 2, "b": {"c": "y", "d": [{"e": False}]}}, real) == []
    assert differences({"a": "1", "b": {"c": "x", "d": [{"e": 1}]}, "z": 0}, real) == [
        "$.a: string where GitHub has number", "$.b.d[0].e: number where GitHub has boolean",
        "$.z: not sent by GitHub"]
    assert differences({"a": 1, "b": {"d": []}}, real) == ["$.b.c: sent by GitHub, missing"]
    assert differences({"a": None, "b": {"c": None, "d": None}}, real) == []


# -- the fake, filled like the recordings --------------------------------------------


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    """A fake holding one of everything, and the names of what it holds."""
    with running_fake() as fake:
        fake.create_repo("u/r")
        hook = fake.create_hook("u/r", {"url": "http://127.0.0.1:9/hook",
                                        "content_type": "json", "secret": "s"}, ["*"])
        c1 = fake.push("u/r", "master", message="first")
        c2 = fake.push("u/r", "master", message="second")
        fake.tag("u/r", "v1", c1)
        t9 = fake.tag("u/r", "v2", c2, annotated=True, message="v2")
        pr = fake.open_pull("u/r", title="Fix", head="fix", body="why", user="alice")
        fake.add_comment("u/r", pr, "ok", user="bob")
        fake.add_status("u/r", c2, "pending")
        fake.add_status("u/r", c2, "success", "ci/a", description="ok",
                        target_url="http://ci/1")
        fake.push("u/r", "fix", message="more")
        fake.retitle_pull("u/r", pr, "Fixed")
        fake.close_pull("u/r", pr)
        fake.reopen_pull("u/r", pr)
        fake.delete_ref("u/r", "tags/v1")
        fake.wait_deliveries()
        yield {"fake": fake, "c1": c1, "c2": c2, "t9": t9, "pr": pr, "hook": hook}


def fake_get(world: dict[str, Any], path: str) -> Any:
    status, _, body = get(world["fake"], path)
    assert status == 200, (path, body)
    return body


def payloads(fake: FakeGitHub, event: str, action: str | None = None) -> list[Any]:
    found = [d.payload for d in fake.deliveries(event)
             if action is None or d.payload.get("action") == action]
    assert found, f"the fake sent no {event} {action or ''}"
    return found


# -- REST answers against @octokit/fixtures ------------------------------------------


def test_repository_matches_the_recording(world: dict[str, Any]) -> None:
    real = recorded("get-repository", "GET", "/repos/octokit-fixture-org/hello-world")
    assert_same_shape(fake_get(world, "/repos/u/r"), real,
                      ["full_name", "name", "owner.login", "default_branch"])


def test_refs_match_the_recording(world: dict[str, Any]) -> None:
    real = recorded("git-refs", "GET", "/git/refs/")
    reads = ["ref", "object.sha", "object.type", "object.url"]
    assert_same_shape(fake_get(world, "/repos/u/r/git/refs/heads"), real, reads)
    assert_same_shape(fake_get(world, "/repos/u/r/git/matching-refs/tags"), real, reads)
    assert_same_shape(fake_get(world, "/repos/u/r/git/ref/heads/master"), real[0], reads)


def test_statuses_match_the_recording(world: dict[str, Any]) -> None:
    c2 = world["c2"]
    reads = ["id", "state", "context", "description", "target_url"]
    combined = recorded("create-status", "GET", "/status")
    assert_same_shape(fake_get(world, f"/repos/u/r/commits/{c2}/status"), combined,
                      ["state", "sha", "total_count",
                       *(f"statuses.{field}" for field in reads)])
    assert_same_shape(fake_get(world, f"/repos/u/r/commits/{c2}/statuses"),
                      recorded("create-status", "GET", "/statuses"), reads)
    status, _, created = call(world["fake"], "POST", f"/repos/u/r/statuses/{c2}", {
        "state": "failure", "target_url": "https://example.com",
        "description": "create-status failure test", "context": "example/1"})
    assert status == 201
    assert_same_shape(created, recorded("create-status", "POST", f"/statuses/{'0' * 39}1"),
                      reads)


def test_validation_error_matches_the_recording(world: dict[str, Any]) -> None:
    real = recorded("errors", "POST", "/labels")
    status, _, body = call(world["fake"], "POST", f"/repos/u/r/statuses/{world['c2']}",
                           {"state": "success", "description": "x" * 141})
    assert status == 422
    body.pop("status")  # added by GitHub in 2023, after the recording
    assert_same_shape(body, real, ["message", "errors.field", "errors.code",
                                   "errors.resource", "documentation_url"], all_keys=False)
    assert set(body) == set(real)


def test_pagination_links_match_the_recording(world: dict[str, Any]) -> None:
    fake: FakeGitHub = world["fake"]
    fake.create_repo("u/many")
    for i in range(12):
        fake.open_pull("u/many", title=f"pr {i}", head=f"b{i}")
    first, second = scenario("paginate-issues")[:2]
    for exchange, page in ((first, 1), (second, 2)):
        real_rels = [part.split(";")[1].strip() for part in exchange["headers"]["link"]
                     .split(",")]
        _, headers, _ = get(fake, f"/repos/u/many/pulls?per_page=3&page={page}")
        ours = [part.split(";")[1].strip() for part in headers["Link"].split(",")]
        assert ours == real_rels


# -- REST answers that GitHub also sends inside webhooks ------------------------------


def test_pull_request_matches_the_recorded_payloads(world: dict[str, Any]) -> None:
    reads = ["number", "state", "title", "body", "head.sha", "head.ref", "base.ref",
             "user.login"]
    real = union([e["pull_request"] for e in webhook_examples("pull_request")])
    assert_same_shape(fake_get(world, f"/repos/u/r/pulls/{world['pr']}"), real, reads)
    listed = fake_get(world, "/repos/u/r/pulls?state=open")
    assert_same_shape(listed[0], real, reads, all_keys=False)


def test_issue_comment_matches_the_recorded_payloads(world: dict[str, Any]) -> None:
    comments = fake_get(world, f"/repos/u/r/issues/{world['pr']}/comments")
    real = union([e["comment"] for e in webhook_examples("issue_comment")])
    assert_same_shape(comments[0], real, ["id", "user.login", "body"])


def test_hook_matches_the_recorded_ping(world: dict[str, Any]) -> None:
    hook = fake_get(world, f"/repos/u/r/hooks/{world['hook']}")
    real = union([e["hook"] for e in webhook_examples("ping")
                  if e["hook"]["type"] == "Repository"])
    assert_same_shape(hook, real, ["id", "active", "events", "config.url",
                                   "config.content_type"])


# -- webhook bodies against @octokit/webhooks-examples --------------------------------


def test_push_payloads_match(world: dict[str, Any]) -> None:
    fake = world["fake"]
    reads = ["ref", "before", "after", "created", "deleted", "repository.full_name",
             "repository.name", "repository.owner.login"]
    pushes = payloads(fake, "push")
    created = next(p for p in pushes if p["created"])
    moved = next(p for p in pushes if not p["created"] and not p["deleted"])
    deleted = next(p for p in pushes if p["deleted"])
    # GitHub's examples hold no plain branch update: it has a created one's shape.
    with_commits = example("push", ref="refs/heads/master")
    assert_same_shape(created, example("push", created=True), [*reads, "head_commit.id"])
    assert_same_shape(moved, with_commits, [*reads, "head_commit.id", "commits.id"])
    assert_same_shape(deleted, example("push", deleted=True), reads)
    assert deleted["head_commit"] is None and moved["commits"]


def test_create_and_delete_payloads_match(world: dict[str, Any]) -> None:
    fake = world["fake"]
    for event in ("create", "delete"):
        assert_same_shape(payloads(fake, event)[0], example(event),
                          ["ref", "ref_type", "repository.full_name"])


def test_pull_request_payloads_match(world: dict[str, Any]) -> None:
    fake = world["fake"]
    reads = ["action", "number", "pull_request.head.sha", "pull_request.state",
             "pull_request.title", "pull_request.base.ref", "pull_request.user.login",
             "repository.full_name"]
    # Every action carries the same PR object: compare it with all recorded ones.
    pr = union([e["pull_request"] for e in webhook_examples("pull_request")])
    for action in ("opened", "closed", "reopened", "synchronize"):
        ours = payloads(fake, "pull_request", action)[0]
        assert_same_shape(ours, {**example("pull_request", action=action), "pull_request": pr},
                          reads)
    # No recorded `edited`: it is `opened` plus `changes` (REST docs).
    edited = dict(payloads(fake, "pull_request", "edited")[0])
    assert edited.pop("changes") == {"title": {"from": "Fix"}}
    assert_same_shape({**edited, "action": "opened"},
                      {**example("pull_request", action="opened"), "pull_request": pr}, reads)


def test_status_and_ping_payloads_match(world: dict[str, Any]) -> None:
    fake = world["fake"]
    reads = ["sha", "state", "context", "description", "target_url", "repository.full_name"]
    assert_same_shape(payloads(fake, "status")[0], example("status"), reads)
    real_ping = union([e for e in webhook_examples("ping") if e["hook"]["type"] == "Repository"])
    assert_same_shape(payloads(fake, "ping")[0], real_ping, ["hook_id", "zen", "hook.id"])


# -- githubkit, the bridge's client, accepts everything ------------------------------


def test_githubkit_models_accept_the_rest_answers(world: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from githubkit.compat import type_validate_python
        from githubkit_schemas.latest import models as m
    c2, pr, fake = world["c2"], world["pr"], world["fake"]
    checks: list[tuple[Any, str]] = [
        (m.FullRepository, "/repos/u/r"),
        (list[m.PullRequestSimple], "/repos/u/r/pulls?state=all"),
        (m.PullRequest, f"/repos/u/r/pulls/{pr}"),
        (list[m.IssueComment], f"/repos/u/r/issues/{pr}/comments"),
        (list[m.GitRef], "/repos/u/r/git/refs/heads"),
        (list[m.GitRef], "/repos/u/r/git/matching-refs/tags"),
        (m.GitRef, "/repos/u/r/git/ref/tags/v2"),
        (m.GitTag, f"/repos/u/r/git/tags/{world['t9']}"),
        (m.CombinedCommitStatus, f"/repos/u/r/commits/{c2}/status"),
        (list[m.Status], f"/repos/u/r/commits/{c2}/statuses"),
        (list[m.Hook], "/repos/u/r/hooks"),
    ]
    for model, path in checks:
        type_validate_python(model, fake_get(world, path))
    _, _, error = call(fake, "POST", f"/repos/u/r/statuses/{c2}", {"state": "nope"})
    type_validate_python(m.ValidationError, error)
    _, _, missing = get(fake, "/repos/u/nothere")
    type_validate_python(m.BasicError, missing)


def test_githubkit_parses_the_webhooks(world: dict[str, Any]) -> None:
    from githubkit.webhooks import parse, verify

    fake: FakeGitHub = world["fake"]
    seen = set()
    for d in fake.deliveries():
        event = parse(d.event, d.body)  # type: ignore[arg-type]
        assert d.event.replace("_", "") in type(event).__name__.lower()
        assert verify("s", d.body, d.headers["X-Hub-Signature-256"])
        seen.add(d.event)
    assert seen == {"ping", "push", "create", "delete", "pull_request", "status"}


async def test_githubkit_async_client_under_trio(fake_github: FakeGitHub) -> None:
    """What the bridge does: githubkit's async client on trio, with its ETag
    cache (answered by 304s), pagination, a status POST and a 422."""
    from githubkit import GitHub
    from githubkit.exception import RequestFailed

    fake_github.push("u/r", "master")
    for i in range(5):
        fake_github.open_pull("u/r", title=f"pr {i}", head=f"b{i}")
    gh = GitHub("token", base_url=fake_github.base_url + "/", http_cache=True)
    async with gh:
        for _ in range(3):
            refs = await gh.rest.git.async_list_matching_refs("u", "r", "heads")
            assert len(refs.parsed_data) == 6
        assert fake_github.not_modified("/repos/u/r/git/matching-refs/heads") == 2
        pages: Any = gh.rest.paginate(gh.rest.pulls.async_list, owner="u", repo="r",
                                      state="open", per_page=2)
        assert sorted([p.number async for p in pages]) == [1, 2, 3, 4, 5]
        assert len(fake_github.requests("GET", "/repos/u/r/pulls")) == 3
        sha = fake_github.ref("u/r", "master")
        assert sha is not None
        made = await gh.rest.repos.async_create_commit_status(
            "u", "r", sha, state="success", context="ci/datakit/test", description="ok")
        assert made.parsed_data.context == "ci/datakit/test"
        with pytest.raises(RequestFailed) as refused:
            await gh.rest.repos.async_create_commit_status("u", "r", sha, state="success",
                                                           description="x" * 141)
        assert refused.value.response.status_code == 422


async def test_githubkit_recognises_the_injected_errors(fake_github: FakeGitHub) -> None:
    """githubkit classifies the fake's rate limits as GitHub's (so its retry
    logic, and the bridge's, see them as such)."""
    from githubkit import GitHub
    from githubkit.exception import (
        PrimaryRateLimitExceeded,
        RequestFailed,
        SecondaryRateLimitExceeded,
    )

    gh = GitHub("token", base_url=fake_github.base_url + "/", auto_retry=False)
    async with gh:
        fake_github.rate_limit(seconds=30)
        with pytest.raises(PrimaryRateLimitExceeded) as primary:
            await gh.rest.repos.async_get("u", "r")
        assert primary.value.retry_after.total_seconds() > 20
        fake_github.fail("/repos/u/r/pulls", status=429, retry_after=5)
        with pytest.raises(SecondaryRateLimitExceeded) as secondary:
            await gh.rest.pulls.async_list("u", "r")
        assert secondary.value.retry_after.total_seconds() == 5
        fake_github.fail("/repos/u/r/hooks")
        with pytest.raises(RequestFailed) as failed:
            await gh.rest.repos.async_list_webhooks("u", "r")
        assert failed.value.response.status_code == 502
