"""BR-16: deliveries without a valid signature are refused with 403."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from datakit.bridges.github.webhooks import sign
from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    datakit_server,
    github_bridge,
    metadata,
    read,
    settle,
    wait_file,
    wait_for,
)
from tests.ports import free_port

EVIL = "e" * 40


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_br_16_webhook_authentication(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake = fake_github
    fake.push("u/r", "master")
    url = f"http://127.0.0.1:{free_port()}/hook"
    secret_file = tmp_path / "secret"
    args = ["--webhook", url, "--webhook-secret-file", str(secret_file)]
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url, *args)) as bridge:
            wait_for(branch, lambda t: t.exists_file("u/r/ref/heads/master/head"))
            assert secret_file.stat().st_mode & 0o777 == 0o600
            secret = secret_file.read_bytes().strip()
            fake.push("u/r", "heads/real")
            wait_for(branch, lambda t: t.exists_file("u/r/ref/heads/real/head"))
            delivered = fake.deliveries("push")[-1]
            payload = delivered.payload
            payload["ref"] = "refs/heads/evil"
            payload["after"] = payload["head_commit"]["id"] = EVIL
            body = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
                       "X-GitHub-Delivery": "test"}
            marker = settle(bridge, branch)
            wrong = {**headers, "X-Hub-Signature-256": sign(b"not the secret", body)}
            assert post(url, body, wrong) == 403
            assert post(url, body, headers) == 403
            tampered = {**headers, "X-Hub-Signature-256": sign(secret, body + b" ")}
            assert post(url, body, tampered) == 403
            ping = json.dumps({"zen": "Keep it simple.", "hook_id": 1}).encode()
            ping_headers = {**headers, "X-GitHub-Event": "ping",
                            "X-Hub-Signature-256": sign(secret, ping)}
            assert post(url, ping, ping_headers) == 204
            assert settle(bridge, branch).parents == [marker]  # nothing changed
            assert read(branch.head().tree(), "u/r/ref/heads/evil/head") is None  # type: ignore[union-attr]
            good = {**headers, "X-Hub-Signature-256": sign(secret, body)}
            assert post(url, body, good) == 204
            wait_file(branch, "u/r/ref/heads/evil/head", f"{EVIL}\n".encode())
        # a restart keeps the secret: the registered hook still verifies
        with github_bridge(*bridge_args(address, fake.base_url, *args)) as bridge:
            bridge.wait_log("webhooks at")
            settle(bridge, branch)
            before = len(fake.deliveries())
            c5 = fake.push("u/r", "master")
            wait_file(branch, "u/r/ref/heads/master/head", f"{c5}\n".encode())
            bridge.wait_log(f"event: ref u/r heads/master {c5}")
            assert [d.status for d in fake.wait_deliveries()[before:]] == [204]
            assert len(fake.hooks("u/r")) == 1
        assert secret_file.read_bytes().strip() == secret
