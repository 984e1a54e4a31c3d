"""Who may rebuild and cancel: one admin whose password is the token of
``--token-file`` (spec B.6), stdlib only.

* A browser logs in with the password and gets a session cookie
  ``<nonce>.<admin>.<issued>.<hmac>``, signed with a random key made at
  process start (a restart logs everyone out, which is fine for one admin).
  Every visitor gets an anonymous session the first time a page with a form
  is shown, so the login form is CSRF-protected too.
* Every form carries a CSRF token, an HMAC of the session nonce; a POST
  from a browser needs both the cookie and the matching token field.
* Scripts send ``Authorization: Bearer <token>`` instead: no cookie is
  involved, so no CSRF token is needed.
* With no token configured every POST is refused.

All secret comparisons are constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "datakit_ci_session"
SESSION_LIFETIME = 7 * 24 * 3600.0

NO_TOKEN_MESSAGE = (
    "Rebuild and cancel are disabled: this CI was started without a token. "
    "Start it with --token-file FILE and log in with the token in FILE."
)


@dataclass(frozen=True, slots=True)
class Session:
    """A visitor's session: ``fresh`` sessions still have to be sent as a
    cookie with the response."""

    nonce: str
    admin: bool
    issued: float
    fresh: bool = False


class Auth:
    """Checks the token and signs sessions with a per-process key."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    # --- sessions ---------------------------------------------------------------

    def new_session(self, *, admin: bool = False) -> Session:
        return Session(secrets.token_hex(16), admin, time.time(), fresh=True)

    def encode(self, session: Session) -> str:
        body = f"{session.nonce}.{int(session.admin)}.{int(session.issued)}"
        return f"{body}.{self._sign('session|' + body)}"

    def decode(self, value: str | None) -> Session | None:
        """The session in a cookie value, or None if it is missing, forged
        or expired."""
        if not value or len(value) > 256:
            return None
        parts = value.split(".")
        if len(parts) != 4:
            return None
        nonce, admin, issued, signature = parts
        body = f"{nonce}.{admin}.{issued}"
        if not hmac.compare_digest(signature, self._sign("session|" + body)):
            return None
        if admin not in ("0", "1") or not issued.isdigit():
            return None
        if time.time() - int(issued) > SESSION_LIFETIME:
            return None
        return Session(nonce, admin == "1" and self.enabled, float(issued))

    def session(self, request: Request) -> Session:
        """The request's session; a fresh anonymous one when it has none."""
        return self.decode(request.cookies.get(COOKIE)) or self.new_session()

    def set_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.encode(session),
            max_age=int(SESSION_LIFETIME),
            httponly=True,
            samesite="strict",
            path="/",
        )

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf|" + session.nonce)

    # --- checks -----------------------------------------------------------------

    def check_password(self, password: str) -> bool:
        if self.token is None:
            return False
        return hmac.compare_digest(password.encode(), self.token.encode())

    def bearer_ok(self, request: Request) -> bool:
        """Whether the request carries ``Authorization: Bearer <token>``."""
        if self.token is None:
            return False
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self.token.encode())

    def csrf_ok(self, session: Session | None, field: str | None) -> bool:
        if session is None or session.fresh or not field:
            return False
        return hmac.compare_digest(field.encode(), self.csrf_token(session).encode())

    def may_act(self, request: Request, form: dict[str, str]) -> str | None:
        """None if the request may rebuild or cancel, else why not (the
        403 page's message)."""
        if self.token is None:
            return NO_TOKEN_MESSAGE
        if self.bearer_ok(request):
            return None
        if "authorization" in request.headers:
            return "Wrong token in the Authorization header."
        session = self.decode(request.cookies.get(COOKIE))
        if session is None or not session.admin:
            return "Log in first (the password is the CI's token)."
        if not self.csrf_ok(session, form.get("csrf")):
            return "Missing or wrong CSRF token: reload the page and try again."
        return None


__all__ = ["COOKIE", "NO_TOKEN_MESSAGE", "Auth", "Session"]
