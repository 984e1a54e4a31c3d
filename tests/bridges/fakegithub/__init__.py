"""A stateful fake GitHub for the bridge tests (spec bridges.md §5).

No GitHub-compatible forge can be installed here, so the tests talk to this:
an HTTP/1.1 server on 127.0.0.1 (its own thread and trio loop) that keeps
repositories, commits, branches, tags (lightweight and annotated), pull
requests with bodies and issue comments, commit statuses and webhooks, and
answers the REST calls of spec §3.3-3.8 with GitHub's JSON shapes (checked
against recorded GitHub exchanges and githubkit's models in
test_fake_github_shapes.py).  The bridge is pointed at it with
`--github-url fake.base_url` and cannot tell it from GitHub.

Starting::

    with running_fake(token=None) as fake:   # or the `fake_github` fixture
        fake.base_url                          # "http://127.0.0.1:PORT", no slash

REST (GET answers carry `ETag`; `If-None-Match` gives 304; `X-RateLimit-*` on
all; lists paginate with `per_page`/`page`/`Link`; with a token, 401 unless
`Authorization: token|Bearer <token>`):
`GET /repos/u/r`, `GET /repos/u/r/pulls?state=open|closed|all`,
`GET|PATCH /repos/u/r/pulls/N` (title, body, state, base),
`GET /repos/u/r/issues/N/comments`, `GET /repos/u/r/git/refs[/heads|/tags|/...]`,
`GET /repos/u/r/git/matching-refs/PREFIX`, `GET /repos/u/r/git/ref/heads/x`,
`GET /repos/u/r/git/tags/SHA`, `GET /repos/u/r/commits/REF/status` (combined),
`GET /repos/u/r/commits/REF/statuses`, `POST /repos/u/r/statuses/SHA` (422 on a bad
state, a description over 140 characters or an unknown commit),
`GET|POST /repos/u/r/hooks`, `GET|PATCH|DELETE /repos/u/r/hooks/ID`, `GET /rate_limit`.
Like GitHub, a repository without commits answers the `git/ref*` calls with
409 "Git Repository is empty."; push something first if a test needs refs.
Commit and tag SHAs may be any string (`"c1"`, `"t9"`) when a test passes them.

Control API (methods of `FakeGitHub`, thread-safe; `repo` is "user/name"):

* state: `create_repo(repo, default_branch="master")`;
  `commit(repo, sha=None, message=, author=, parents=) -> sha` (no ref moves);
  `push(repo, ref, sha=None, message=, author=, forced=False) -> sha` (`ref`:
  `master`, `heads/x`, `tags/v1` or `refs/...`; makes the commit if new);
  `tag(repo, name, target, annotated=False, message=, tagger=, tag_sha=None) -> sha`
  (annotated: returns the tag object's SHA, which the ref points at);
  `delete_ref(repo, ref)`; `ref(repo, ref) -> sha | None`; `refs(repo) -> dict`;
  `open_pull(repo, title=, head=, head_sha=None, base=None, user="alice",
  body=None, number=None) -> n`; `edit_pull(repo, n, title=, body=, base=, state=)`,
  `close_pull`, `reopen_pull`, `retitle_pull(repo, n, title)`,
  `retarget_pull(repo, n, base)`; `pull(repo, n) -> PullRequest` (a copy);
  `add_comment(repo, n, body, user="bob", comment_id=None) -> id`; `comments(repo, n)`;
  `add_status(repo, sha, state, context=None, description=, target_url=,
  creator="other-ci") -> id` (raises `StateError` on what GitHub refuses);
  `statuses(repo, sha)` (all, oldest first); `combined_status(repo, sha) ->
  (state, {context: Status})`; `hooks(repo)`; `create_hook(repo, config, events)`.
* webhooks: every change above (and through REST) is POSTed to each active
  hook subscribed to the event, from a background thread, in order, signed
  (`X-Hub-Signature`, `X-Hub-Signature-256`) with the hook's secret:
  `push` (`created`/`deleted`, `head_commit` null on delete), `create`,
  `delete`, `pull_request` (opened, edited with `changes`, closed, reopened,
  synchronize), `status`, and `ping` to a hook when it is created.
  `deliveries(event=None) -> [Delivery]` (guid, event, url, headers, body,
  `payload`, `status` = the receiver's code, 0 if unreachable);
  `wait_deliveries(timeout)` / `await await_deliveries(timeout)` wait until
  all were attempted;
  `with fake.without_webhooks(): ...` changes state silently.
* failures: `fail(glob, count=1, status=502, method=None, retry_after=None)`
  (next `count` requests whose path matches answer `status`, with
  `Retry-After` if given); `rate_limit(seconds=2,
  pattern=None)` (the next request and all until the reset answer 403 with
  `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset` ahead);
  `requests_before_reset()` (requests that ignored it), `rate_limit_reset()`;
  `break_network("refuse")` (listener and connections closed) or
  `break_network("close")` (requests read, then the connection is closed
  unanswered); `heal_network()`.
* observing: `requests(method=None, path=glob) -> [RequestRecord]` (method,
  path, query, headers, body as parsed JSON, time, status answered);
  `clear_requests()`; `call_counts() -> Counter[(method, path)]`;
  `conditional_hits(path)`, `not_modified(path)` (304s);
  `wait_until(pred, timeout)` (threads), `await await_until(pred, timeout)` (trio).
  `client.call(fake, method, path, body)` / `client.get(fake, path)` give
  (status, headers, JSON) with the stdlib, for poking the fake directly.
* over HTTP: `POST /_control/<method>` with the keyword arguments as a JSON
  object answers `{"result": ...}` (most methods above; not the network
  switches nor the waits; not logged as requests).  Standalone, for trying a
  bridge by hand: `python -m tests.bridges.fakegithub --port 8090 --repo u/r`.
"""

from tests.bridges.fakegithub.control import FakeGitHub, RequestRecord
from tests.bridges.fakegithub.server import FakeServer, running_fake
from tests.bridges.fakegithub.state import StateError
from tests.bridges.fakegithub.webhooks import Delivery, signatures

__all__ = ["Delivery", "FakeGitHub", "FakeServer", "RequestRecord", "StateError",
           "running_fake", "signatures"]
