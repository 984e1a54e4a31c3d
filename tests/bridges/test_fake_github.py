"""The fake GitHub itself: pagination, ETags, combined status, annotated tags,
validation, injected failures and rate limits, the network, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.bridges.fakegithub import FakeGitHub, StateError, running_fake
from tests.bridges.fakegithub.client import call, get, links


def test_pulls_paginate_with_link_headers(fake_github: FakeGitHub) -> None:
    fake_github.push("u/r", "master")
    for i in range(45):
        fake_github.open_pull("u/r", title=f"pr {i}", head=f"b{i}")
    fake_github.close_pull("u/r", 7)
    numbers, url, pages = [], "/repos/u/r/pulls?state=open&per_page=20", 0
    while url:
        status, headers, body = get(fake_github, url)
        assert status == 200
        numbers += [p["number"] for p in body]
        rels = links(headers["Link"])
        pages += 1
        if pages == 1:
            assert set(rels) == {"next", "last"}
            assert "page=3" in rels["last"] and "state=open" in rels["next"]
        url = rels.get("next", "")
    assert pages == 3
    assert numbers == sorted(set(range(1, 46)) - {7}, reverse=True)
    assert set(rels) == {"prev", "first"}
    _, _, closed = get(fake_github, "/repos/u/r/pulls?state=closed")
    assert [p["number"] for p in closed] == [7]


def test_comments_paginate_in_order(fake_github: FakeGitHub) -> None:
    n = fake_github.open_pull("u/r", title="t", head="x", body="why")
    ids = [fake_github.add_comment("u/r", n, f"c{i}", user="bob") for i in range(35)]
    _, headers, first = get(fake_github, f"/repos/u/r/issues/{n}/comments")
    assert len(first) == 30
    _, _, second = get(fake_github, links(headers["Link"])["next"])
    assert [c["id"] for c in first + second] == ids
    assert second[-1]["body"] == "c34" and second[-1]["user"]["login"] == "bob"
    status, _, _ = get(fake_github, "/repos/u/r/issues/99/comments")
    assert status == 404


def test_etag_and_304_are_counted_and_free(fake_github: FakeGitHub) -> None:
    c1 = fake_github.push("u/r", "master")
    path = "/repos/u/r/git/refs/heads"
    status, headers, _ = get(fake_github, path)
    etag, remaining = headers["ETag"], int(headers["X-RateLimit-Remaining"])
    assert status == 200 and etag
    status, headers, body = get(fake_github, path, **{"If-None-Match": etag})
    assert status == 304 and body is None
    assert int(headers["X-RateLimit-Remaining"]) == remaining
    assert fake_github.conditional_hits(path) == 1 and fake_github.not_modified(path) == 1
    fake_github.push("u/r", "master")
    status, headers, body = get(fake_github, path, **{"If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag and body[0]["object"]["sha"] != c1
    assert fake_github.conditional_hits(path) == 2 and fake_github.not_modified(path) == 1
    assert int(headers["X-RateLimit-Remaining"]) == remaining - 1
    assert int(headers["X-RateLimit-Limit"]) == 5000
    assert int(headers["X-RateLimit-Reset"]) > time.time()


def test_combined_status_takes_the_latest_per_context(fake_github: FakeGitHub) -> None:
    c1 = fake_github.push("u/r", "master")
    path = f"/repos/u/r/commits/{c1}/status"
    _, _, body = get(fake_github, path)
    assert (body["state"], body["total_count"], body["statuses"]) == ("pending", 0, [])
    fake_github.add_status("u/r", c1, "failure", "ci/a")
    fake_github.add_status("u/r", c1, "success", "ci/a", target_url="http://ci/1")
    fake_github.add_status("u/r", c1, "success")
    _, _, body = get(fake_github, path)
    assert body["state"] == "success" and body["sha"] == c1 and body["total_count"] == 2
    by_context = {s["context"]: s for s in body["statuses"]}
    assert set(by_context) == {"ci/a", "default"}
    assert by_context["ci/a"]["target_url"] == "http://ci/1"
    fake_github.add_status("u/r", c1, "pending", "ci/b")
    assert get(fake_github, path)[2]["state"] == "pending"
    fake_github.add_status("u/r", c1, "error", "ci/c")
    assert get(fake_github, path)[2]["state"] == "failure"
    assert get(fake_github, "/repos/u/r/commits/master/status")[2]["sha"] == c1
    _, _, history = get(fake_github, f"/repos/u/r/commits/{c1}/statuses")
    assert len(history) == 5 and history[0]["context"] == "ci/c"


def test_annotated_tags_are_tag_objects(fake_github: FakeGitHub) -> None:
    c1 = fake_github.push("u/r", "master")
    assert fake_github.tag("u/r", "v1", c1) == c1
    t9 = fake_github.tag("u/r", "v2", c1, annotated=True, message="release 2")
    assert t9 != c1
    _, _, tags = get(fake_github, "/repos/u/r/git/refs/tags")
    objects = {t["ref"]: t["object"] for t in tags}
    assert objects["refs/tags/v1"] == {"sha": c1, "type": "commit", "url": objects[
        "refs/tags/v1"]["url"]}
    assert objects["refs/tags/v2"]["sha"] == t9 and objects["refs/tags/v2"]["type"] == "tag"
    status, _, tag = get(fake_github, objects["refs/tags/v2"]["url"])
    assert status == 200
    assert tag["object"] == {"sha": c1, "type": "commit", "url": tag["object"]["url"]}
    assert tag["tag"] == "v2" and tag["message"] == "release 2"
    assert get(fake_github, f"/repos/u/r/git/tags/{c1}")[0] == 404


def test_ref_listings(fake_github: FakeGitHub) -> None:
    c1 = fake_github.push("u/r", "master")
    c2 = fake_github.push("u/r", "feature/x")
    _, _, heads = get(fake_github, "/repos/u/r/git/refs/heads")
    assert [(h["ref"], h["object"]["sha"]) for h in heads] == [
        ("refs/heads/feature/x", c2), ("refs/heads/master", c1)]
    _, _, one = get(fake_github, "/repos/u/r/git/ref/heads/feature/x")
    assert one["object"]["sha"] == c2
    assert get(fake_github, "/repos/u/r/git/ref/heads/feature")[0] == 404
    _, _, matching = get(fake_github, "/repos/u/r/git/matching-refs/heads/feat")
    assert [m["ref"] for m in matching] == ["refs/heads/feature/x"]
    assert get(fake_github, "/repos/u/r/git/matching-refs/tags")[2] == []
    assert get(fake_github, "/repos/u/r/git/refs/tags")[0] == 404
    fake_github.delete_ref("u/r", "feature/x")
    assert [h["ref"] for h in get(fake_github, "/repos/u/r/git/refs/heads")[2]] == [
        "refs/heads/master"]


def test_status_validation_answers_422(fake_github: FakeGitHub) -> None:
    c1 = fake_github.push("u/r", "master")
    path = f"/repos/u/r/statuses/{c1}"
    status, _, body = call(fake_github, "POST", path, {"state": "success",
                                                       "description": "x" * 141})
    assert status == 422 and body["message"] == "Validation Failed"
    assert body["errors"][0]["field"] == "description" and "documentation_url" in body
    status, _, body = call(fake_github, "POST", path, {"state": "green"})
    assert status == 422 and body["errors"][0]["field"] == "state"
    status, _, body = call(fake_github, "POST", "/repos/u/r/statuses/" + "1" * 40,
                           {"state": "success"})
    assert status == 422 and body["message"].startswith("No commit found")
    assert fake_github.statuses("u/r", c1) == []
    status, headers, body = call(fake_github, "POST", path, {
        "state": "pending", "context": "ci/datakit/test", "description": "é" * 140,
        "target_url": "http://ci/x"})
    assert status == 201 and body["context"] == "ci/datakit/test"
    assert headers["Location"].endswith(f"/statuses/{c1}")
    with pytest.raises(StateError):
        fake_github.add_status("u/r", c1, "success", description="y" * 141)
    [post] = fake_github.requests("POST", f"/repos/u/r/statuses/{c1}")[-1:]
    assert post.body == {"state": "pending", "context": "ci/datakit/test",
                         "description": "é" * 140, "target_url": "http://ci/x"}
    assert len(fake_github.requests("POST", "/repos/u/r/statuses/*")) == 4


def test_patch_pull(fake_github: FakeGitHub) -> None:
    fake_github.push("u/r", "master")
    fake_github.push("u/r", "develop")
    n = fake_github.open_pull("u/r", title="Fix", head="fix", body="why", number=3)
    assert n == 3
    status, _, body = call(fake_github, "PATCH", "/repos/u/r/pulls/3",
                           {"title": "New", "state": "open", "base": "develop"})
    assert status == 200 and (body["title"], body["base"]["ref"]) == ("New", "develop")
    assert fake_github.pull("u/r", 3).body == "why"
    status, _, body = call(fake_github, "PATCH", "/repos/u/r/pulls/3", {"base": "nope"})
    assert status == 422
    call(fake_github, "PATCH", "/repos/u/r/pulls/3", {"state": "closed"})
    assert get(fake_github, "/repos/u/r/pulls")[2] == []
    assert get(fake_github, "/repos/u/r/pulls/3")[2]["state"] == "closed"
    assert get(fake_github, "/repos/u/r/pulls/4")[0] == 404


def test_injected_failures(fake_github: FakeGitHub) -> None:
    fake_github.fail("/repos/u/r/pulls*", count=2)
    assert get(fake_github, "/repos/u/r")[0] == 200
    assert get(fake_github, "/repos/u/r/pulls")[0] == 502
    assert get(fake_github, "/repos/u/r/pulls?page=2")[0] == 502
    assert get(fake_github, "/repos/u/r/pulls")[0] == 200
    fake_github.fail("/repos/u/r/statuses/*", method="POST", status=500)
    assert get(fake_github, "/repos/u/r/statuses/abc")[0] == 404
    c1 = fake_github.push("u/r", "master")
    assert call(fake_github, "POST", f"/repos/u/r/statuses/{c1}", {"state": "success"})[0] == 500
    assert call(fake_github, "POST", f"/repos/u/r/statuses/{c1}", {"state": "success"})[0] == 201
    assert [r.status for r in fake_github.requests(path="/repos/u/r/pulls")] == [502, 502, 200]


def test_rate_limit_and_requests_before_reset(fake_github: FakeGitHub) -> None:
    fake_github.rate_limit(seconds=2)
    status, headers, body = get(fake_github, "/repos/u/r")
    reset = int(headers["X-RateLimit-Reset"])
    assert status == 403 and headers["X-RateLimit-Remaining"] == "0"
    assert "rate limit" in body["message"] and reset >= time.time() + 1
    assert fake_github.rate_limit_reset() == reset
    assert fake_github.requests_before_reset() == []
    assert get(fake_github, "/repos/u/r/pulls")[0] == 403
    assert [r.path for r in fake_github.requests_before_reset()] == ["/repos/u/r/pulls"]
    while time.time() < reset:
        time.sleep(0.05)
    status, headers, _ = get(fake_github, "/repos/u/r")
    assert status == 200 and int(headers["X-RateLimit-Remaining"]) > 0
    assert len(fake_github.requests_before_reset()) == 1


def test_token_is_checked() -> None:
    with running_fake(token="s3cret") as fake:
        fake.create_repo("u/r")
        status, _, body = get(fake, "/repos/u/r")
        assert status == 401 and body["message"] == "Bad credentials"
        assert get(fake, "/repos/u/r", Authorization="token wrong")[0] == 401
        assert get(fake, "/repos/u/r", Authorization="token s3cret")[0] == 200
        assert get(fake, "/repos/u/r", Authorization="Bearer s3cret")[0] == 200


def test_network_break_and_heal(fake_github: FakeGitHub) -> None:
    fake_github.break_network("refuse")
    with pytest.raises(urllib.error.URLError) as refused:
        get(fake_github, "/repos/u/r")
    assert isinstance(refused.value.reason, ConnectionRefusedError)
    fake_github.heal_network()
    assert get(fake_github, "/repos/u/r")[0] == 200
    fake_github.break_network("close")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        get(fake_github, "/repos/u/r")
    assert fake_github.requests()[-1].status is None
    fake_github.heal_network()
    assert get(fake_github, "/repos/u/r")[0] == 200


# -- webhooks ----------------------------------------------------------------


class Receiver:
    """A webhook endpoint recording (headers, raw body) and answering `code`."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.code = 204
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[tuple[str, Any]]:
        return [(h["x-github-event"], json.loads(b)) for h, b in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_webhooks_are_delivered_signed(fake_github: FakeGitHub, receiver: Receiver) -> None:
    status, _, hook = call(fake_github, "POST", "/repos/u/r/hooks", {
        "name": "web", "active": True,
        "events": ["create", "delete", "push", "status", "pull_request"],
        "config": {"url": receiver.url, "content_type": "json", "secret": "k"}})
    assert status == 201 and hook["config"]["secret"] == "********"
    c1 = fake_github.push("u/r", "master")
    fake_github.delete_ref("u/r", "master")
    c2 = fake_github.push("u/r", "master")
    n = fake_github.open_pull("u/r", title="Fix", head="fix")
    fake_github.retitle_pull("u/r", n, "Fixed")
    fake_github.close_pull("u/r", n)
    fake_github.add_status("u/r", c2, "success", "ci/x", description="ok")
    with fake_github.without_webhooks():
        fake_github.push("u/r", "quiet")
    deliveries = fake_github.wait_deliveries()
    assert [d.status for d in deliveries] == [204] * len(deliveries)
    events = receiver.events()
    assert [(e, p.get("action", p.get("ref"))) for e, p in events] == [
        ("ping", None), ("create", "master"), ("push", "refs/heads/master"),
        ("delete", "master"), ("push", "refs/heads/master"),
        ("create", "master"), ("push", "refs/heads/master"),
        ("create", "fix"), ("push", "refs/heads/fix"), ("pull_request", "opened"),
        ("pull_request", "edited"), ("pull_request", "closed"), ("status", None)]
    created, deleted = events[2][1], events[4][1]
    assert created["created"] and created["head_commit"]["id"] == c1 and created["after"] == c1
    assert deleted["deleted"] and deleted["head_commit"] is None
    assert deleted["before"] == c1 and deleted["after"] == "0" * 40
    assert events[10][1]["changes"] == {"title": {"from": "Fix"}}
    assert events[11][1]["pull_request"]["state"] == "closed"
    assert events[12][1]["sha"] == c2 and events[12][1]["context"] == "ci/x"
    assert events[0][1]["hook_id"] == hook["id"]
    for headers, body in receiver.received:
        assert headers["x-hub-signature-256"] == "sha256=" + hmac.new(
            b"k", body, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature"] == "sha1=" + hmac.new(
            b"k", body, hashlib.sha1).hexdigest()
        assert headers["content-type"] == "application/json"
    guids = {h["x-github-delivery"] for h, _ in receiver.received}
    assert len(guids) == len(receiver.received)


def test_hook_update_and_failed_deliveries(fake_github: FakeGitHub,
                                           receiver: Receiver) -> None:
    hook_id = fake_github.create_hook("u/r", {"url": receiver.url, "content_type": "json",
                                              "secret": "old"}, ["push"])
    status, _, hook = call(fake_github, "PATCH", f"/repos/u/r/hooks/{hook_id}",
                           {"config": {"url": receiver.url, "content_type": "json",
                                       "secret": "new"}, "add_events": ["status"]})
    assert status == 200 and hook["events"] == ["push", "status"]
    fake_github.wait_deliveries()
    receiver.code = 403
    c1 = fake_github.push("u/r", "master")
    fake_github.add_status("u/r", c1, "success")
    fake_github.open_pull("u/r", title="not subscribed", head="x")
    deliveries = fake_github.wait_deliveries()
    assert [(d.event, d.status) for d in deliveries] == [
        ("ping", 204), ("push", 403), ("status", 403), ("push", 403)]
    headers, body = receiver.received[-1]
    assert headers["x-hub-signature-256"] == "sha256=" + hmac.new(
        b"new", body, hashlib.sha256).hexdigest()
    _, _, listed = get(fake_github, "/repos/u/r/hooks")
    assert listed[0]["last_response"]["code"] == 403
    receiver.server.shutdown()
    receiver.server.server_close()
    fake_github.push("u/r", "master")
    assert fake_github.wait_deliveries()[-1].status == 0


def test_empty_repository_answers_409_on_refs(fake_github: FakeGitHub) -> None:
    for path in ("/repos/u/r/git/refs/heads", "/repos/u/r/git/matching-refs/heads",
                 "/repos/u/r/git/ref/heads/master"):
        status, _, body = get(fake_github, path)
        assert (status, body["message"]) == (409, "Git Repository is empty."), path
    fake_github.push("u/r", "master", "c1")
    assert get(fake_github, "/repos/u/r/git/ref/heads/master")[2]["object"]["sha"] == "c1"
    fake_github.tag("u/r", "v2", "c1", annotated=True, tag_sha="t9")
    assert get(fake_github, "/repos/u/r/git/tags/t9")[2]["object"]["sha"] == "c1"


def test_secondary_rate_limit_sends_retry_after(fake_github: FakeGitHub) -> None:
    fake_github.fail("/repos/u/r", status=429, retry_after=3)
    status, headers, body = get(fake_github, "/repos/u/r")
    assert (status, headers["Retry-After"]) == (429, "3") and "secondary" in body["message"]
    assert get(fake_github, "/repos/u/r")[0] == 200


async def test_trio_helpers(fake_github: FakeGitHub) -> None:
    fake_github.create_hook("u/r", {"url": "http://127.0.0.1:9/nobody"}, ["push"])
    fake_github.push("u/r", "master")
    done = await fake_github.await_deliveries()
    assert [(d.event, d.status) for d in done] == [("ping", 0), ("push", 0)]
    assert done[1].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert done[1].payload["ref"] == "refs/heads/master"
    await fake_github.await_until(lambda: fake_github.ref("u/r", "master") is not None)


def test_br_02_setup_reads_back(fake_github: FakeGitHub) -> None:
    """The fake holds BR-2's PR as the bridge will read it (body first, then comments)."""
    fake_github.push("u/r", "master")
    aaa = "a" * 40
    assert fake_github.open_pull("u/r", number=3, title="Fix", head="fix", head_sha=aaa,
                                 user="alice", body="why") == 3
    assert fake_github.add_comment("u/r", 3, "ok", user="bob", comment_id=7) == 7
    _, _, [pr] = get(fake_github, "/repos/u/r/pulls?state=open")
    assert (pr["number"], pr["head"]["sha"], pr["title"], pr["base"]["ref"],
            pr["user"]["login"], pr["body"]) == (3, aaa, "Fix", "master", "alice", "why")
    _, _, [comment] = get(fake_github, "/repos/u/r/issues/3/comments")
    assert (comment["id"], comment["user"]["login"], comment["body"]) == (7, "bob", "ok")
    assert fake_github.call_counts()[("GET", "/repos/u/r/issues/3/comments")] == 1


def test_http_control_api(fake_github: FakeGitHub) -> None:
    status, _, body = call(fake_github, "POST", "/_control/push",
                           {"repo": "u/r", "ref": "master", "sha": "c1"})
    assert (status, body) == (200, {"result": "c1"})
    call(fake_github, "POST", "/_control/open_pull",
         {"repo": "u/r", "title": "Fix", "head": "fix", "body": "why"})
    _, _, body = call(fake_github, "POST", "/_control/pull", {"repo": "u/r", "number": 1})
    assert body["result"]["title"] == "Fix" and body["result"]["state"] == "open"
    status, _, body = call(fake_github, "POST", "/_control/add_status",
                           {"repo": "u/r", "sha": "c1", "state": "green"})
    assert status == 422
    assert call(fake_github, "POST", "/_control/push", {"repo": "u/r"})[0] == 400
    assert call(fake_github, "POST", "/_control/break_network", {})[0] == 404
    assert call(fake_github, "GET", "/_control/push")[0] == 404
    assert [r.path for r in fake_github.requests()] == []  # control calls are not logged


def test_runs_standalone_and_stops_on_sigterm() -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bridges.fakegithub", "--repo", "me/p", "--token", "t"],
        cwd=root, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        fake = FakeGitHub()  # only for its base_url in the helpers
        fake.set_base_url(url)
        assert call(fake, "POST", "/_control/push", {"repo": "me/p", "ref": "main"})[0] == 200
        assert get(fake, "/repos/me/p/git/refs/heads")[0] == 401
        status, _, refs = get(fake, "/repos/me/p/git/refs/heads", Authorization="token t")
        assert status == 200 and refs[0]["ref"] == "refs/heads/main"
        fake.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
