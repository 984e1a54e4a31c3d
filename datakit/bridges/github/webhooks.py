"""GitHub webhooks: signature check, payload -> model event, and the listener
(spec/bridges.md §3.7).

A delivery is acknowledged (204) only once its event sits on the bridge's
bounded trio memory channel; when the channel is full the answer is 503, so
a stalled bridge makes GitHub record failed deliveries rather than having
the listener block or grow without bound. Events are consumed in memory by
the reconciliation loop; nothing is written from here.

Payloads are parsed with githubkit's typed webhook models first. Those
models lag behind GitHub (of the real examples in ``@octokit/webhooks-
examples`` 7.6.1, 18 of 29 ``pull_request`` and all 4 ``status`` payloads fail
githubkit 0.16.1's validation on fields we never read), so when validation
fails the few fields we need are read from the JSON directly; only a payload
lacking those is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio
from githubkit.webhooks import parse_obj
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datakit.bridges.github.metrics import MetricsHook
from datakit.github.model import (
    PR,
    Comment,
    Event,
    PRState,
    PRUpdated,
    Ref,
    RefId,
    RefRemoved,
    RefUpdated,
    Repo,
    Status,
    StatusState,
    StatusUpdated,
    context_of,
)

log = logging.getLogger(__name__)

EVENTS = ("create", "delete", "push", "status", "pull_request")
"""The events the bridge registers its hooks for."""
MAX_BODY = 25 * 1024 * 1024
"""GitHub caps webhook payloads at 25 MB; a larger body is not GitHub's."""


@dataclass(frozen=True, slots=True)
class PRUpdatedNoComments(PRUpdated):
    """A PR from a ``pull_request`` delivery: the payload carries the PR's
    body but not its comments, so ``pr.comments`` holds only comment 0 (the
    body). Fetch the others (``GitHubAPI.with_comments(pr)``) before writing
    the PR, or its ``comments/`` directory would lose them."""


class WebhookPayloadError(ValueError):
    """A delivery of a kind we use whose payload lacks what we need."""


# --- signatures ---------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, v in headers.items():
            if key.lower() == lowered:
                return v
    return value


def verify(secret: bytes, body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether `body` was signed with `secret`: ``X-Hub-Signature-256:
    sha256=<hex>`` (HMAC-SHA256), or, only when that header is absent, the
    legacy ``X-Hub-Signature: sha1=<hex>``. Constant-time comparison."""
    sig256 = _header(headers, "X-Hub-Signature-256")
    if sig256 is not None:
        prefix, algo = "sha256=", hashlib.sha256
        given = sig256
    else:
        sig1 = _header(headers, "X-Hub-Signature")
        if sig1 is None:
            return False
        prefix, algo, given = "sha1=", hashlib.sha1, sig1
    given = given.strip()
    if not given.startswith(prefix):
        return False
    expected = prefix + hmac.new(secret, body, algo).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii", "replace"))


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub would send (for tests and fakes)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# --- payload -> event -----------------------------------------------------------


_MISSING = object()


def _get(obj: Any, *keys: str) -> Any:
    """``obj.a.b`` on githubkit's models or ``obj["a"]["b"]`` on raw JSON, so
    one extraction serves both sources; KeyError when a step is missing."""
    for key in keys:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            obj = obj[key]
        else:
            obj = getattr(obj, key, _MISSING)
            if obj is _MISSING:
                raise KeyError(key)
    return obj


def _opt(obj: Any, *keys: str) -> Any:
    try:
        return _get(obj, *keys)
    except (KeyError, TypeError):
        return None


def _repo(p: Any) -> Repo:
    try:
        return Repo.parse(str(_get(p, "repository", "full_name")))
    except (KeyError, TypeError, ValueError) as e:
        raise WebhookPayloadError(f"no usable repository.full_name ({e})") from None


def _pr(repo: Repo, pr: Any) -> PR:
    owner = str(_opt(pr, "user", "login") or "")
    state = PRState.OPEN if str(_get(pr, "state")) == "open" else PRState.CLOSED
    return PR(
        repo=repo,
        number=int(_get(pr, "number")),
        head=str(_get(pr, "head", "sha")),
        state=state,
        title=str(_opt(pr, "title") or ""),
        base=str(_get(pr, "base", "ref")),
        owner=owner,
        comments=(Comment(0, owner, str(_opt(pr, "body") or "")),),
    )


def _status(repo: Repo, p: Any) -> Status:
    try:
        state = StatusState(str(_get(p, "state")))
    except ValueError:
        state = StatusState.FAILURE  # unknown states read as failure (§1.2)
    return Status(
        repo=repo,
        commit=str(_get(p, "sha")),
        context=context_of(_opt(p, "context")),
        state=state,
        description=_opt(p, "description") or None,
        target_url=_opt(p, "target_url") or None,
    )


def _push(repo: Repo, p: Any) -> Event | None:
    ref = str(_get(p, "ref"))
    if not ref.startswith(("refs/heads/", "refs/tags/")):
        return None  # the bridge imports heads and tags only
    name = tuple(ref[len("refs/") :].split("/"))
    head_id = _opt(p, "head_commit", "id")
    if _opt(p, "deleted") or not head_id:
        return RefRemoved(RefId(repo, name))
    return RefUpdated(Ref(repo, name, str(head_id)), created=bool(_opt(p, "created")))


USED = ("pull_request", "status", "push")
_typed_lock = threading.Lock()


def _typed(name: str, payload: Mapping[str, Any]) -> Any:
    """githubkit's parse, one thread at a time: building the models of an
    event kind takes seconds the first time (4.4 s for ``pull_request`` here)."""
    with _typed_lock:
        return parse_obj(name, payload)


def warm_up() -> None:
    """Build githubkit's models of the kinds we use (in a worker thread, at
    listener start), so the first delivery does not wait seconds."""
    for name in USED:
        with contextlib.suppress(ValidationError):
            _typed(name, {})


def parse_event(name: str, payload: Mapping[str, Any]) -> Event | None:
    """The model event of a delivery of kind `name` (``X-GitHub-Event``), or
    None for kinds the bridge ignores (``ping``, ``create``, ``delete``, and
    everything else). Raises :class:`WebhookPayloadError` for a payload of a
    used kind that lacks a needed field."""
    if name not in USED:
        return None
    source: Any
    try:
        source = _typed(name, payload)
    except ValidationError as e:
        log.debug("githubkit rejects this %s payload (%d errors); reading the JSON directly",
                  name, e.error_count())
        source = payload
    repo = _repo(source)
    try:
        if name == "pull_request":
            return PRUpdatedNoComments(_pr(repo, _get(source, "pull_request")))
        if name == "status":
            return StatusUpdated(_status(repo, source))
        return _push(repo, source)
    except (KeyError, TypeError, ValueError) as e:
        raise WebhookPayloadError(f"{name} payload: missing or bad field {e}") from None


# --- the listener ---------------------------------------------------------------


def make_app(
    secret: bytes,
    path: str,
    events: trio.MemorySendChannel[Event],
    metrics: MetricsHook | None = None,
) -> Starlette:
    """The ASGI app: ``POST path`` checks the signature (403), the JSON
    (400), maps the event and queues it (204; 503 when the queue is full)."""
    hook = metrics or MetricsHook()

    async def deliver(request: Request) -> Response:
        delivery = request.headers.get("x-github-delivery", "?")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:  # unauthenticated so far: do not buffer it all
                hook.delivery("bad_request")
                log.warning("webhook delivery %s refused: body over %d bytes", delivery, MAX_BODY)
                return Response(status_code=413)
            chunks.append(chunk)
        body = b"".join(chunks)
        if not verify(secret, body, request.headers):
            hook.delivery("forbidden")
            log.warning("webhook delivery %s refused: missing or bad signature", delivery)
            return Response(status_code=403)
        kind = request.headers.get("x-github-event", "")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            hook.delivery("bad_request")
            log.warning("webhook delivery %s (%s) refused: body is not a JSON object",
                        delivery, kind)
            return Response(status_code=400)
        try:
            # in a thread: githubkit's validation is CPU work that must not
            # stall the bridge's event loop
            event = await trio.to_thread.run_sync(parse_event, kind, payload)
        except WebhookPayloadError as e:
            hook.delivery("bad_request")
            log.warning("webhook delivery %s refused: %s", delivery, e)
            return Response(status_code=400)
        if event is None:
            hook.delivery("ignored")
            log.debug("webhook delivery %s: %s event ignored", delivery, kind or "unnamed")
            return Response(status_code=204)
        try:
            events.send_nowait(event)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            hook.delivery("overloaded")
            log.warning("webhook delivery %s (%s): event queue full, answered 503",
                        delivery, kind)
            return Response(status_code=503)
        hook.delivery("accepted")
        log.info("webhook delivery %s: %s", delivery, event)
        return Response(status_code=204)

    return Starlette(routes=[Route(path or "/", deliver, methods=["POST"])])


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int
    path: str


def listen_address(webhook_url: str, listen: str | None = None) -> ListenAddress:
    """Where to listen for `webhook_url` (spec §3.7): ``--webhook-listen
    HOST:PORT`` when given, else the URL's own port (80/443 by default) on
    the URL's host when that is an IP literal or ``localhost``, on every
    interface otherwise (a public name need not be an address of this
    machine). The path is always the URL's. ValueError on a bad value."""
    parts = urlsplit(webhook_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--webhook {webhook_url!r}: not an http(s) URL")
    path = parts.path or "/"
    if listen is not None:
        host, sep, port_text = listen.rpartition(":")
        if not sep or not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"--webhook-listen {listen!r}: expected HOST:PORT")
        return ListenAddress(host.strip("[]") or "0.0.0.0", int(port_text), path)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"--webhook {webhook_url!r}: bad port") from None
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            host = "0.0.0.0"
    return ListenAddress(host, port, path)


async def serve(
    app: Starlette,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` with Hypercorn's trio worker until cancelled;
    ``nursery.start`` returns the bound URLs (``["http://127.0.0.1:8080"]``),
    which tells a test the port chosen for port 0. Call :func:`warm_up` in
    a thread first (and wait for it) so the first delivery is not the one
    that builds githubkit's models."""
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger(__name__ + ".hypercorn")  # type: ignore[assignment]
    config.graceful_timeout = 1.0
    await hypercorn_serve(app, config, task_status=task_status)  # type: ignore[arg-type]
