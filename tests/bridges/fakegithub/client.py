"""A minimal stdlib HTTP client for poking the fake in tests (no githubkit)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.bridges.fakegithub.control import FakeGitHub


def call(fake: FakeGitHub, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, headers, parsed JSON or None) for one request to the fake."""
    url = path if path.startswith("http") else fake.base_url + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, resp.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, e.headers, json.loads(raw) if raw else None


def get(fake: FakeGitHub, path: str, **headers: str) -> tuple[int, Any, Any]:
    return call(fake, "GET", path, headers=headers)


def links(header: str | None) -> dict[str, str]:
    out = {}
    for part in (header or "").split(","):
        if part.strip():
            url, rel = part.split(";")
            out[rel.strip().removeprefix('rel="').rstrip('"')] = url.strip()[1:-1]
    return out
