"""The control API over HTTP: `POST /_control/<method>` with keyword arguments.

For a fake running in another process (`python -m tests.bridges.fakegithub`);
tests in the same process call the `FakeGitHub` methods directly.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from tests.bridges.fakegithub.control import FakeGitHub
from tests.bridges.fakegithub.state import StateError
from tests.bridges.fakegithub.webhooks import Delivery

CONTROL_PREFIX = "/_control/"
# Control methods reachable as POST /_control/<name> with the keyword arguments
# as a JSON object.  Not the network switches (they would cut this channel) nor
# the waits (they would block the server's loop).
HTTP_CONTROL = frozenset({
    "create_repo", "commit", "push", "tag", "delete_ref", "ref", "refs", "open_pull",
    "edit_pull", "close_pull", "reopen_pull", "retitle_pull", "retarget_pull", "pull",
    "add_comment", "comments", "add_status", "statuses", "combined_status", "hooks",
    "create_hook", "fail", "rate_limit", "requests_before_reset", "rate_limit_reset",
    "requests", "clear_requests", "call_counts", "deliveries", "conditional_hits",
    "not_modified",
})


def to_json(value: Any) -> Any:
    """Control results as JSON: dataclasses as objects, deliveries without
    their raw body and event."""
    if isinstance(value, Delivery):
        return {"guid": value.guid, "hook_id": value.hook_id, "repo": value.repo,
                "event": value.event, "url": value.url, "headers": value.headers,
                "payload": value.payload, "status": value.status, "error": value.error}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Counter):
        return [[*k, v] if isinstance(k, tuple) else [k, v] for k, v in value.items()]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def control_call(fake: FakeGitHub, method: str, name: str, body: Any) -> tuple[int, Any]:
    """POST /_control/<name> {kwargs}: run a control method; (status, JSON answer)."""
    if method != "POST" or name not in HTTP_CONTROL:
        return 404, {"message": f"no control method {name!r} (POST only)",
                     "methods": sorted(HTTP_CONTROL)}
    if body is not None and not isinstance(body, dict):
        return 400, {"message": "the body must be a JSON object of arguments"}
    try:
        result = getattr(fake, name)(**(body or {}))
    except StateError as e:
        return e.status, {"message": e.message, "errors": e.errors}
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        return 400, {"message": f"{type(e).__name__}: {e}"}
    return 200, {"result": to_json(result)}
