"""Webhook payloads shaped like GitHub's, and their signed delivery.

Delivery runs in one background thread, in the order events happened, with
the headers GitHub sends (`X-GitHub-Event`, `X-GitHub-Delivery`,
`X-Hub-Signature`, `X-Hub-Signature-256`).  Every attempt is recorded with
the receiver's status code (0 when the connection failed), like the
"Recent Deliveries" list of a GitHub hook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.bridges.fakegithub.shapes import Json, Shapes
from tests.bridges.fakegithub.state import Commit, Hook, PullRequest, Repo, Status, now_iso

ZERO = "0" * 40
ZEN = "Keep it logically awesome."


def signatures(secret: str, body: bytes) -> dict[str, str]:
    """The two signature headers GitHub computes over the raw body."""
    key = secret.encode()
    return {
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


class Payloads:
    """Bodies of the events the bridge subscribes to (plus `ping`)."""

    def __init__(self, shapes: Shapes) -> None:
        self.shapes = shapes

    def _common(self, repo: Repo, sender: str, *, push_event: bool = False) -> Json:
        variant = "push" if push_event else "embedded"
        return {"repository": self.shapes.repository(repo, variant),
                "sender": self.shapes.user(sender)}

    def ping(self, repo: Repo, hook: Hook, sender: str) -> Json:
        return {"zen": ZEN, "hook_id": hook.id, "hook": self.shapes.hook(repo, hook),
                **self._common(repo, sender)}

    def push(self, repo: Repo, ref: str, before: str | None, after: str | None,
             head: Commit | None, sender: str, forced: bool = False) -> Json:
        created, deleted = before is None, after is None
        short = ref.split("/", 2)[-1]
        if created:
            compare = f"https://github.com/{repo.full_name}/compare/{short}"
        else:
            compare = f"https://github.com/{repo.full_name}/compare/{(before or ZERO)[:12]}" \
                      f"...{(after or ZERO)[:12]}"
        commits = [self.shapes.push_commit(repo, head)] if head and not created else []
        return {
            "ref": ref, "before": before or ZERO, "after": after or ZERO,
            "created": created, "deleted": deleted, "forced": forced, "base_ref": None,
            "compare": compare, "commits": commits,
            "head_commit": self.shapes.push_commit(repo, head) if head else None,
            "pusher": {"name": sender, "email": f"{sender}@example.com"},
            **self._common(repo, sender, push_event=True),
        }

    def create(self, repo: Repo, ref: str, sender: str) -> Json:
        kind, short = _ref_kind(ref)
        return {"ref": short, "ref_type": kind, "master_branch": repo.default_branch,
                "description": None, "pusher_type": "user", **self._common(repo, sender)}

    def delete(self, repo: Repo, ref: str, sender: str) -> Json:
        kind, short = _ref_kind(ref)
        return {"ref": short, "ref_type": kind, "pusher_type": "user",
                **self._common(repo, sender)}

    def pull_request(self, repo: Repo, pr: PullRequest, action: str, sender: str,
                     changes: Json | None = None, before: str | None = None) -> Json:
        out: Json = {"action": action, "number": pr.number}
        if changes is not None:
            out["changes"] = changes
        if action == "synchronize" and before is not None:
            out.update({"before": before, "after": pr.head_sha})
        out["pull_request"] = self.shapes.pull(repo, pr)
        out.update(self._common(repo, sender))
        return out

    def status(self, repo: Repo, st: Status) -> Json:
        commit = repo.commits[st.sha]
        url = self.shapes.repo_url(repo)
        branches = [{"name": b, "commit": {"sha": repo.refs[f"refs/heads/{b}"],
                                           "url": f"{url}/commits/{repo.refs[f'refs/heads/{b}']}"},
                     "protected": False} for b in repo.branches_at(st.sha)]
        stamp = now_iso(st.created).replace("Z", "+00:00")
        return {
            "id": st.id, "sha": st.sha, "name": repo.full_name, "target_url": st.target_url,
            "avatar_url": self.shapes.user(st.creator)["avatar_url"],
            "context": st.context, "description": st.description, "state": st.state,
            "commit": self.shapes.commit(repo, commit), "branches": branches,
            "created_at": stamp, "updated_at": stamp, **self._common(repo, st.creator),
        }


def _ref_kind(ref: str) -> tuple[str, str]:
    if ref.startswith("refs/tags/"):
        return "tag", ref[len("refs/tags/"):]
    return "branch", ref.removeprefix("refs/heads/")


@dataclass
class Delivery:
    """One POST to a hook's URL, as recorded after the attempt."""

    guid: str
    hook_id: int
    repo: str
    event: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # None until attempted; 0 when the connection failed
    error: str | None = None
    delivered_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def payload(self) -> Any:
        """The event as JSON, whichever content type the hook asked for."""
        if self.headers["Content-Type"] == "application/json":
            return json.loads(self.body)
        return json.loads(urllib.parse.parse_qs(self.body.decode())["payload"][0])


class Deliverer:
    """A thread that POSTs queued deliveries one at a time, in order."""

    def __init__(self, on_result: Callable[[Delivery], None], timeout: float = 10.0) -> None:
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._on_result = on_result
        self._timeout = timeout
        self._thread = threading.Thread(target=self._run, name="fake-github-webhooks",
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def prepare(hook: Hook, repo: Repo, event: str, payload: Json) -> Delivery:
        content_type = hook.config.get("content_type", "form")
        raw = json.dumps(payload, separators=(",", ":")).encode()
        if content_type == "json":
            body, ctype = raw, "application/json"
        else:
            body = urllib.parse.urlencode({"payload": raw.decode()}).encode()
            ctype = "application/x-www-form-urlencoded"
        guid = str(uuid.uuid4())
        headers = {
            "Content-Type": ctype, "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Event": event, "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": str(hook.id),
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": str(repo.id),
        }
        if hook.config.get("secret"):
            headers.update(signatures(hook.config["secret"], body))
        return Delivery(guid, hook.id, repo.full_name, event, hook.config.get("url", ""),
                        headers, body)

    def enqueue(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def _run(self) -> None:
        while (d := self._queue.get()) is not None:
            request = urllib.request.Request(d.url, data=d.body, headers=d.headers,
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as resp:
                    d.status = resp.status
            except urllib.error.HTTPError as e:
                d.status = e.code
            except (OSError, ValueError) as e:
                d.status, d.error = 0, str(e)
            d.delivered_at = time.time()
            self._on_result(d)
            d.done.set()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self._timeout + 5)
