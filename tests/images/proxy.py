"""A recording, fault-injecting HTTP proxy in front of a real registry (threads, streaming).

Tests need to see what a client sent (to count uploads) and to make a real
registry misbehave in ways it rarely does on its own: a 416 halfway through a
chunked upload, a request whose answer never comes, a wrong
Docker-Content-Digest, a 5xx, a token-auth front. Bodies are streamed in
pieces both ways, so a 100 MiB blob costs no memory here.

The Host header is forwarded unchanged, so the registry builds upload
Locations that point back at the proxy.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

_PIECE = 64 * 1024
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
WRONG_DIGEST = "sha256:" + hashlib.sha256(b"rewritten by the test proxy").hexdigest()


@dataclass
class _Rule:
    kind: str  # "fail", "drop", "drop_answer", "digest"
    method: str
    path: re.Pattern[str]
    remaining: int
    status: int = 0
    code: str = ""
    after: int = 0  # matching requests to let through first


@dataclass
class _Bearer:
    username: str
    password: str
    tokens: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # token -> grants


class RegistryProxy:
    """Forwards to `upstream` ("127.0.0.1:PORT"); listens on `address` once entered.

    `requests`: (method, path?query, status) of every request, in order; status
    0 for a request dropped without an answer, minus the registry's status for
    one whose answer was dropped (drop_answer_next). Token requests (require_bearer)
    are recorded too, with path "/token?...". `headers`: the request headers of
    each, in the same order (names in lower case)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.address = ""
        self.requests: list[tuple[str, str, int]] = []
        self.headers: list[dict[str, str]] = []  # request headers, same order as `requests`
        self._rules: list[_Rule] = []
        self._bearer: _Bearer | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()

    # -- faults ---------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        *,
        code: str = "INJECTED",
        after: int = 0,
    ) -> None:
        """Answer the next `times` matching requests with `status` and a JSON error `code`
        (the body is read, nothing is forwarded). `after`: let that many matching
        requests through first (e.g. a 416 for the third PATCH: after=2)."""
        self._add(_Rule("fail", method, re.compile(path_regex), times, status, code, after))

    def drop_next(self, method: str, path_regex: str, *, after: int = 0) -> None:
        """Read the next matching request whole, then close the connection without an answer
        (nothing is forwarded)."""
        self._add(_Rule("drop", method, re.compile(path_regex), 1, after=after))

    def drop_answer_next(self, method: str, path_regex: str, *, after: int = 0) -> None:
        """Forward the next matching request, then close the connection instead of relaying
        the registry's answer (the registry did the work; the client never hears of it)."""
        self._add(_Rule("drop_answer", method, re.compile(path_regex), 1, after=after))

    def rewrite_digest_next(self, method: str, path_regex: str) -> None:
        """Forward the next matching request, but answer with a wrong Docker-Content-Digest."""
        self._add(_Rule("digest", method, re.compile(path_regex), 1))

    def require_bearer(self, username: str, password: str) -> None:
        """Act as a token-auth registry: /v2/ requests need a Bearer token for their
        repository and action, issued by GET /token (Basic `username`:`password`)."""
        with self._lock:
            self._bearer = _Bearer(username, password)

    def expire_tokens(self) -> None:
        """Forget every token issued so far (as a token service's tokens expire)."""
        with self._lock:
            if self._bearer is not None:
                self._bearer.tokens.clear()

    def count(self, method: str, path_regex: str, status: int | None = None) -> int:
        """How many recorded requests match."""
        pattern = re.compile(path_regex)
        with self._lock:
            return sum(
                1
                for m, p, s in self.requests
                if m == method and pattern.search(p) and (status is None or s == status)
            )

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and rule.method == method and rule.path.search(path):
                    if rule.after > 0:
                        rule.after -= 1
                        continue
                    rule.remaining -= 1
                    return rule
        return None

    def _record(self, method: str, path: str, status: int, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path, status))
            self.headers.append(headers)

    # -- lifetime ---------------------------------------------------------

    def __enter__(self) -> RegistryProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.address = f"127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, name="registry-proxy")
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join(timeout=30)
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:  # kept-alive client connections
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: RegistryProxy
    protocol_version = "HTTP/1.1"
    timeout = 120  # a client that goes silent does not pin a thread forever

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._sockets.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._sockets.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the recorded requests say it all

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- request body ---------------------------------------------------------

    def _body_pieces(self):  # type: ignore[no-untyped-def]
        """The request body in pieces (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(_PIECE, left))
                    if not piece:
                        return
                    left -= len(piece)
                    yield piece
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                piece = self.rfile.read(min(_PIECE, left))
                if not piece:
                    return
                left -= len(piece)
                yield piece

    def _lower_headers(self) -> dict[str, str]:
        return {key.lower(): value for key, value in self.headers.items()}

    def _discard_body(self) -> None:
        for _ in self._body_pieces():
            pass

    # -- answers ------------------------------------------------------------

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response_only(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # Recorded before the client can see the answer, so a test reading
        # `requests` right after its call returned finds it there.
        self.owner._record(self.command, self.path, status, self._lower_headers())
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(
            {"errors": [{"code": code, "message": "injected by the test proxy", "detail": None}]}
        ).encode()
        self._answer(status, body, headers)

    # -- dispatch -----------------------------------------------------------

    def _handle(self) -> None:
        method, path = self.command, self.path
        bearer = self.owner._bearer
        if bearer is not None and urlsplit(path).path == "/token":
            self._discard_body()
            self._token(bearer)
            return
        rule = self.owner._take_rule(method, path)
        if rule is not None and rule.kind == "fail":
            self._discard_body()
            self._error(rule.status, rule.code)
            return
        if rule is not None and rule.kind == "drop":
            self._discard_body()
            self.owner._record(method, path, 0, self._lower_headers())
            self._hang_up()
            return
        if bearer is not None and not self._authorized(bearer):
            self._discard_body()
            return
        kind = rule.kind if rule is not None else ""
        self._forward(rewrite_digest=kind == "digest", drop_answer=kind == "drop_answer")

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _token(self, bearer: _Bearer) -> None:
        expected = base64.b64encode(f"{bearer.username}:{bearer.password}".encode()).decode()
        if self.headers.get("Authorization", "") != f"Basic {expected}":
            self._error(401, "UNAUTHORIZED", {"WWW-Authenticate": 'Basic realm="token"'})
            return
        grants: set[tuple[str, str]] = set()
        for scope in parse_qs(urlsplit(self.path).query).get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository":
                grants.update((name, action) for action in actions.split(","))
        token = secrets.token_hex(16)
        with self.owner._lock:
            bearer.tokens[token] = grants
        self._answer(200, json.dumps({"token": token, "access_token": token}).encode())

    def _authorized(self, bearer: _Bearer) -> bool:
        """Whether the request carries a token good for it; else answer 401 with a challenge."""
        parts = urlsplit(self.path)
        m = re.match(r"/v2/(.+?)/(blobs|manifests|tags)/", parts.path)
        needed: set[tuple[str, str]] = set()
        scope = ""
        if m:
            action = "pull" if self.command in ("GET", "HEAD") else "push"
            needed.add((m.group(1), action))
            scope = f"repository:{m.group(1)}:{'pull' if action == 'pull' else 'pull,push'}"
            source = parse_qs(parts.query).get("from")
            if source:
                needed.add((source[0], "pull"))
        given = self.headers.get("Authorization", "")
        with self.owner._lock:
            grants = bearer.tokens.get(given.removeprefix("Bearer "), None)
        if given.startswith("Bearer ") and grants is not None and needed <= grants:
            return True
        challenge = f'Bearer realm="http://{self.owner.address}/token",service="test-proxy"'
        if scope:
            challenge += f',scope="{scope}"'
        self._error(401, "UNAUTHORIZED", {"WWW-Authenticate": challenge})
        return False

    def _forward(self, *, rewrite_digest: bool, drop_answer: bool) -> None:
        host, _, port = self.owner.upstream.rpartition(":")
        upstream = http.client.HTTPConnection(host, int(port), timeout=120)
        recorded = False
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            for key, value in self.headers.items():
                if key.lower() in _HOP_BY_HOP or (
                    key.lower() == "authorization" and self.owner._bearer
                ):
                    continue
                upstream.putheader(key, value)
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            for piece in self._body_pieces():
                upstream.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
            if drop_answer:
                response.read()
                self.owner._record(self.command, self.path, -response.status, self._lower_headers())
                self._hang_up()
                return
            self.owner._record(
                self.command, self.path, response.status, self._lower_headers()
            )  # before relaying
            recorded = True
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            for key, value in response.getheaders():
                if key.lower() in _HOP_BY_HOP:
                    continue
                if rewrite_digest and key.lower() == "docker-content-digest":
                    value = WRONG_DIGEST
                self.send_header(key, value)
            no_body = self.command == "HEAD" or response.status in (204, 304)
            if length is None and not no_body:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not no_body:
                while True:
                    piece = response.read(_PIECE)
                    if not piece:
                        break
                    self.wfile.write(
                        piece if length is not None else b"%x\r\n%s\r\n" % (len(piece), piece)
                    )
                if length is None:
                    self.wfile.write(b"0\r\n\r\n")
        except OSError as e:  # upstream down: say so like a gateway would
            self.close_connection = True
            if recorded:
                return  # the client went away while we relayed
            self.owner._record(self.command, self.path, 502, self._lower_headers())
            body = json.dumps({"errors": [{"code": "PROXY", "message": str(e)}]}).encode()
            try:
                self.send_response_only(502)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass
        finally:
            upstream.close()
