"""Webhooks: signatures, payload mapping, and the Hypercorn listener over
real HTTP; the token and secret files."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from datakit.bridges.github.metrics import MetricsHook
from datakit.bridges.github.secretfiles import SecretFileError, load_or_create_secret, load_token
from datakit.bridges.github.webhooks import (
    PRUpdatedNoComments,
    WebhookPayloadError,
    listen_address,
    make_app,
    parse_event,
    serve,
    sign,
    verify,
)
from datakit.github.model import (
    Comment,
    Event,
    PRState,
    PRUpdated,
    Ref,
    RefId,
    RefRemoved,
    RefUpdated,
    Repo,
    StatusState,
    StatusUpdated,
)

SECRET = b"s3cret"
REPO = Repo("u", "r")
_EXAMPLE_DIRS = [  # installed by scripts/test for the fake's shape checks, if at all
    Path(__file__).parent / ".npm" / "node_modules",
    Path("/tmp/npmtry/node_modules"),
]
EXAMPLES = next(
    (p for d in _EXAMPLE_DIRS
     if (p := d / "@octokit/webhooks-examples/api.github.com/index.json").exists()),
    _EXAMPLE_DIRS[0] / "@octokit/webhooks-examples/api.github.com/index.json",
)


# --- signatures ---------------------------------------------------------------


def test_verify_sha256_and_the_sha1_fallback() -> None:
    body = b'{"zen": "hi"}'
    good = sign(SECRET, body)
    sha1 = "sha1=" + hmac.new(SECRET, body, hashlib.sha1).hexdigest()
    assert verify(SECRET, body, {"X-Hub-Signature-256": good})
    assert verify(SECRET, body, {"x-hub-signature-256": good.upper().replace("SHA256", "sha256")})
    assert not verify(SECRET, body + b" ", {"X-Hub-Signature-256": good})
    assert not verify(b"other", body, {"X-Hub-Signature-256": good})
    assert not verify(SECRET, body, {"X-Hub-Signature-256": good.removeprefix("sha256=")})
    assert not verify(SECRET, body, {})
    assert verify(SECRET, body, {"X-Hub-Signature": sha1})
    # the SHA-1 header counts only when the SHA-256 one is absent
    assert not verify(SECRET, body, {"X-Hub-Signature": sha1, "X-Hub-Signature-256": "sha256=00"})
    assert not verify(SECRET, body, {"X-Hub-Signature": "sha1=" + "0" * 40})


# --- payloads -----------------------------------------------------------------


def _repository() -> dict[str, Any]:
    return {"full_name": "u/r", "name": "r", "owner": {"login": "u"}}


def pull_request(action: str, state: str = "open", body: str | None = "why") -> dict[str, Any]:
    return {
        "action": action,
        "number": 3,
        "pull_request": {
            "number": 3, "state": state, "title": "Fix", "body": body,
            "user": {"login": "alice"},
            "head": {"sha": "a" * 40, "ref": "fix"}, "base": {"sha": "b" * 40, "ref": "master"},
        },
        "repository": _repository(),
    }


def push(ref: str, head: str | None, *, deleted: bool = False, created: bool = False
         ) -> dict[str, Any]:
    return {
        "ref": ref, "before": "0" * 40, "after": head or "0" * 40, "deleted": deleted,
        "created": created, "head_commit": {"id": head} if head else None,
        "repository": _repository(),
    }


def status(context: str | None, state: str = "success") -> dict[str, Any]:
    return {
        "sha": "c" * 40, "context": context, "state": state, "description": "ok",
        "target_url": None, "repository": _repository(),
    }


def test_pull_request_maps_to_a_pr_whose_comments_must_be_fetched() -> None:
    event = parse_event("pull_request", pull_request("opened"))
    assert isinstance(event, PRUpdatedNoComments) and isinstance(event, PRUpdated)
    pr = event.pr
    assert (pr.repo, pr.number, pr.head, pr.state, pr.title, pr.base, pr.owner) == (
        REPO, 3, "a" * 40, PRState.OPEN, "Fix", "master", "alice")
    assert pr.comments == (Comment(0, "alice", "why"),)
    closed = parse_event("pull_request", pull_request("closed", "closed", body=None))
    assert isinstance(closed, PRUpdated)
    assert closed.pr.state is PRState.CLOSED and closed.pr.comments == (Comment(0, "alice", ""),)


def test_push_maps_to_ref_updates_and_removals() -> None:
    assert parse_event("push", push("refs/heads/master", "c" * 40)) == RefUpdated(
        Ref(REPO, ("heads", "master"), "c" * 40))
    assert parse_event("push", push("refs/heads/feature/x", "d" * 40, created=True)) == (
        RefUpdated(Ref(REPO, ("heads", "feature", "x"), "d" * 40), created=True))
    assert parse_event("push", push("refs/heads/feature/x", None, deleted=True)) == RefRemoved(
        RefId(REPO, ("heads", "feature", "x")))
    assert parse_event("push", push("refs/tags/v1", None)) == RefRemoved(
        RefId(REPO, ("tags", "v1")))
    assert parse_event("push", push("refs/notes/commits", "e" * 40)) is None


def test_status_maps_with_default_context() -> None:
    event = parse_event("status", status("ci/circleci"))
    assert isinstance(event, StatusUpdated)
    s = event.status
    assert (s.repo, s.commit, s.context, s.state, s.description, s.target_url) == (
        REPO, "c" * 40, ("ci", "circleci"), StatusState.SUCCESS, "ok", None)
    event = parse_event("status", status(None, "bogus"))
    assert isinstance(event, StatusUpdated)
    assert event.status.context == ("default",) and event.status.state is StatusState.FAILURE


def test_ignored_kinds_and_bad_payloads() -> None:
    for kind in ("ping", "create", "delete", "issues", ""):
        assert parse_event(kind, {"zen": "x", "repository": _repository()}) is None
    with pytest.raises(WebhookPayloadError):
        parse_event("push", {"ref": "refs/heads/x"})  # no repository
    bad = pull_request("opened")
    del bad["pull_request"]["head"]
    with pytest.raises(WebhookPayloadError):
        parse_event("pull_request", bad)
    bad_repo = push("refs/heads/x", "c" * 40)
    bad_repo["repository"]["full_name"] = "no-slash"
    with pytest.raises(WebhookPayloadError):
        parse_event("push", bad_repo)


@pytest.mark.skipif(not EXAMPLES.exists(), reason="@octokit/webhooks-examples not installed")
def test_real_payload_shapes() -> None:
    """Every example of the kinds we use maps (whether or not githubkit's
    models accept it), to the values the payload holds."""
    examples = {e["name"]: e["examples"] for e in json.loads(EXAMPLES.read_text())}
    for payload in examples["pull_request"]:
        event = parse_event("pull_request", payload)
        assert isinstance(event, PRUpdatedNoComments)
        assert event.pr.number == payload["pull_request"]["number"]
        assert event.pr.head == payload["pull_request"]["head"]["sha"]
        assert event.pr.state.value == payload["pull_request"]["state"]
        assert str(event.pr.repo) == payload["repository"]["full_name"]
    for payload in examples["status"]:
        event = parse_event("status", payload)
        assert isinstance(event, StatusUpdated)
        assert event.status.commit == payload["sha"]
    for payload in examples["push"]:
        event = parse_event("push", payload)
        if payload["head_commit"] is None:
            assert isinstance(event, RefRemoved)
        else:
            assert isinstance(event, RefUpdated)
            assert event.ref.head == payload["head_commit"]["id"]
    for kind in ("ping", "create", "delete"):
        for payload in examples[kind]:
            assert parse_event(kind, payload) is None


# --- the listener over HTTP -------------------------------------------------------


class Deliveries(MetricsHook):
    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[str] = []

    def delivery(self, outcome: str) -> None:
        self.outcomes.append(outcome)
        super().delivery(outcome)


@dataclass
class Listener:
    url: str
    events: trio.MemoryReceiveChannel[Event]
    metrics: Deliveries
    http: httpx.AsyncClient

    async def post(self, kind: str, body: bytes, signature: str | None = "good",
                   path: str = "/hook") -> int:
        headers = {"X-GitHub-Event": kind, "X-GitHub-Delivery": "d1",
                   "Content-Type": "application/json"}
        if signature == "good":
            headers["X-Hub-Signature-256"] = sign(SECRET, body)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        response = await self.http.post(self.url + path, content=body, headers=headers)
        return response.status_code


@pytest.fixture
async def listener(nursery: trio.Nursery) -> AsyncIterator[Listener]:
    send, receive = trio.open_memory_channel[Event](2)
    metrics = Deliveries()
    app = make_app(SECRET, "/hook", send, metrics)
    (url,) = await nursery.start(serve, app, "127.0.0.1", 0)
    async with httpx.AsyncClient() as http:
        yield Listener(url, receive, metrics, http)


def _pending(channel: trio.MemoryReceiveChannel[Event]) -> list[Event]:
    out = []
    while True:
        try:
            out.append(channel.receive_nowait())
        except trio.WouldBlock:
            return out


async def test_listener_answers_by_signature_and_body(listener: Listener) -> None:
    body = json.dumps(push("refs/heads/master", "c" * 40)).encode()
    assert await listener.post("push", body, signature=None) == 403
    assert await listener.post("push", body, signature="sha256=" + "0" * 64) == 403
    assert await listener.post("push", body, signature=sign(b"wrong", body)) == 403
    assert _pending(listener.events) == []
    assert await listener.post("push", b"not json") == 400
    assert await listener.post("push", b"[1, 2]") == 400
    assert await listener.post("push", json.dumps({"ref": "x"}).encode()) == 400
    assert await listener.post("ping", json.dumps({"zen": "z", "hook_id": 1}).encode()) == 204
    assert _pending(listener.events) == []
    assert await listener.post("push", body) == 204
    assert _pending(listener.events) == [RefUpdated(Ref(REPO, ("heads", "master"), "c" * 40))]
    assert await listener.post("pull_request", json.dumps(pull_request("opened")).encode()) == 204
    (event,) = _pending(listener.events)
    assert isinstance(event, PRUpdatedNoComments) and event.pr.number == 3
    assert listener.metrics.outcomes == [
        "forbidden", "forbidden", "forbidden", "bad_request", "bad_request", "bad_request",
        "ignored", "accepted", "accepted",
    ]


async def test_listener_refuses_other_paths_methods_and_huge_bodies(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps(push("refs/heads/master", "c" * 40)).encode()
    assert await listener.post("push", body, path="/other") == 404
    assert (await listener.http.get(listener.url + "/hook")).status_code == 405
    monkeypatch.setattr("datakit.bridges.github.webhooks.MAX_BODY", len(body) - 1)
    assert await listener.post("push", body) == 413
    assert _pending(listener.events) == []


async def test_a_full_queue_answers_503(listener: Listener) -> None:
    bodies = [json.dumps(push("refs/heads/b", c * 40)).encode() for c in "123"]
    assert [await listener.post("push", b) for b in bodies] == [204, 204, 503]
    assert [e.ref.head for e in _pending(listener.events)  # type: ignore[union-attr]
            ] == ["1" * 40, "2" * 40]
    assert await listener.post("push", bodies[2]) == 204
    assert listener.metrics.outcomes[-2:] == ["overloaded", "accepted"]


def test_listen_address() -> None:
    a = listen_address("http://127.0.0.1:8081/hook")
    assert (a.host, a.port, a.path) == ("127.0.0.1", 8081, "/hook")
    a = listen_address("http://hooks.datakit.ci:81")
    assert (a.host, a.port, a.path) == ("0.0.0.0", 81, "/")
    a = listen_address("https://hooks.example/gh/x")
    assert (a.host, a.port, a.path) == ("0.0.0.0", 443, "/gh/x")
    a = listen_address("http://hooks.example/h", "127.0.0.1:9000")
    assert (a.host, a.port, a.path) == ("127.0.0.1", 9000, "/h")
    a = listen_address("http://hooks.example/h", "[::1]:9000")
    assert (a.host, a.port) == ("::1", 9000)
    for bad in [("ftp://x/h", None), ("http:///h", None), ("http://x/h", "nope"),
                ("http://x/h", "1.2.3.4:99999")]:
        with pytest.raises(ValueError):
            listen_address(*bad)


# --- secret files -------------------------------------------------------------------


def test_webhook_secret_is_created_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first  # a restart keeps the hooks working
    path.write_text("  written with echo \n")
    assert load_or_create_secret(path) == b"written with echo"
    path.chmod(0o640)
    with pytest.raises(SecretFileError, match="readable by group or others"):
        load_or_create_secret(path)


def test_token_file_and_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("ghp_abc\n")
    token.chmod(0o600)
    assert load_token(token, {}) == "ghp_abc"
    assert load_token(token, {"GITHUB_TOKEN": "env"}) == "ghp_abc"
    assert load_token(None, {"GITHUB_TOKEN": " env \n"}) == "env"
    assert load_token(None, {}) is None
    token.chmod(0o604)
    with pytest.raises(SecretFileError, match="readable by group or others") as info:
        load_token(token, {})
    assert "\n" not in str(info.value)
    with pytest.raises(SecretFileError, match="no such file"):
        load_token(tmp_path / "missing", {})
    empty = tmp_path / "empty"
    fd = os.open(empty, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    with pytest.raises(SecretFileError, match="empty"):
        load_token(empty, {})
