"""Connections to remotes for `fetch`, bounded in what a remote can do to us.

* Which remotes may be named at all is the operator's choice
  (:class:`RemotePolicy.schemes`): a local path or ``file://`` URL reads any
  repository the server can see, and ``ssh://`` uses the server's own ssh
  identity, so only ``git``, ``http`` and ``https`` are allowed by default.
* Every read from the remote goes through a :class:`FetchGuard`: it counts
  bytes against a cap (the ref advertisement is held in memory; the pack
  is streamed to disk but still bounded), notes activity for the inactivity
  watchdog, and fails once the fetch is aborted.
* The watchdog (one thread per fetch) aborts a fetch when the remote has sent
  nothing for the connect or inactivity timeout; an abort, or a cancellation
  by the caller (the 9p request was flushed, the client went away), shuts
  the socket down or kills the helper process, so a blocked read returns at
  once and the fetch thread ends.

Local repositories are read by ``git upload-pack`` in a child process, as
`git fetch` does, so that a FIFO or a device where a repository file should
be cannot block or flood the server itself: the child is killed instead.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("git", "http", "https", "ssh", "file")
DEFAULT_SCHEMES = frozenset({"git", "http", "https"})
_SSH_ALIASES = {"git+ssh": "ssh", "ssh+git": "ssh"}
_MiB = 1024 * 1024


@dataclass(frozen=True)
class RemotePolicy:
    """What fetches may do; the server's flags set it (`datakit serve
    --remote-schemes`, `--remote-connect-timeout`, `--remote-timeout`)."""

    schemes: frozenset[str] = DEFAULT_SCHEMES
    connect_timeout: float = 10.0  # seconds to connect (and to the first byte)
    inactivity_timeout: float = 60.0  # seconds without a byte from the remote
    # The whole fetch: a remote that drips a byte now and then is never
    # inactive for long, and a rate cannot tell it from git's keep-alives
    # (a few bytes every 5 s while a big pack is prepared): only a deadline
    # ends it.
    max_time: float = 3600.0
    max_advertisement: int = 16 * _MiB  # the refs list, held in memory
    max_pack: int = 4096 * _MiB  # the pack, streamed to a temporary file
    # One object of the pack: each is inflated whole in memory to be checked,
    # so this bounds the memory a fetch takes (the server sets its
    # --max-file-size: a bigger file could not be written either).
    max_object: int = 4096 * _MiB


ALLOW_ALL = RemotePolicy(schemes=frozenset(SCHEMES))  # the client library's Git backend


def parse_schemes(text: str) -> frozenset[str]:
    """``git,http,https`` -> the set; ValueError naming an unknown scheme."""
    found = {s.strip().lower() for s in text.split(",") if s.strip()}
    found = {_SSH_ALIASES.get(s, s) for s in found}
    unknown = sorted(found - set(SCHEMES))
    if unknown:
        raise ValueError(f"unknown scheme {unknown[0]!r}: use some of {','.join(SCHEMES)}")
    return frozenset(found)


def scheme_of(url: str) -> str:
    """The scheme a URL is fetched with: a plain path is ``file``, and
    ``host:path`` (no slash before the colon) is ssh, as git reads them."""
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        return _SSH_ALIASES.get(scheme, scheme)
    if re.match(r"[^/]+:", url):
        return "ssh"
    return "file"


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")
_SHOWN_MAX = 256


def shown_url(url: str) -> str:
    """``url`` as errors and logs may show it: a password replaced by
    ``***`` (a client's error or the server's log must never carry it),
    control characters escaped and the length bounded."""

    def hide(m: re.Match[str]) -> str:
        user, colon, _ = m.group(2).partition(":")
        return m.group(1) + user + (":***" if colon else "") + "@"

    shown = _USERINFO.sub(hide, url, count=1)
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    return shown if len(shown) <= _SHOWN_MAX else shown[: _SHOWN_MAX - 3] + "..."


def check_url(url: str) -> None:
    """ValueError saying why ``url`` cannot be a remote: a control character
    (git refuses them too), or a host, port or IPv6 address that does not
    parse."""
    for c in url:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            raise ValueError(f"the URL contains a control character ({c!r})")
    if "://" in url:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- parsing it is the check
        except ValueError as exc:
            raise ValueError(f"malformed URL: {exc}") from None


class FetchAborted(Exception):
    """The guard stopped the fetch; str() says why (timeout, cap, cancel)."""


class FetchGuard:
    """Bounds of one fetch, shared by the fetch thread, its watchdog and
    whoever may cancel it (see the module doc)."""

    def __init__(self, policy: RemotePolicy) -> None:
        self.policy = policy
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._on_abort: list[Callable[[], object]] = []
        self._on_end: list[Callable[[], object]] = []
        self._timeout = policy.connect_timeout
        self._last = time.monotonic()
        self._deadline = self._last + policy.max_time
        self._connected = False
        self._count = 0
        self._limit = policy.max_advertisement
        self._what = "ref advertisement"
        self._done = threading.Event()
        self._received = False  # the remote has sent everything

    # -- stopping ------------------------------------------------------------
    def cancel(self) -> None:
        self.abort("the fetch was cancelled")

    def abort(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            actions, self._on_abort = self._on_abort, []
        for action in actions:
            with contextlib.suppress(Exception):
                action()

    def on_abort(self, action: Callable[[], object]) -> None:
        """Run ``action`` (shut a socket down, kill a process) on abort, now
        if the fetch was aborted already."""
        with self._lock:
            if self.reason is None:
                self._on_abort.append(action)
                return
        action()

    def on_end(self, action: Callable[[], object]) -> None:
        """Run ``action`` (close a socket) when the fetch ends (see watching)."""
        with self._lock:
            self._on_end.append(action)

    def check(self) -> None:
        if self.reason is not None:
            raise FetchAborted(self.reason)

    # -- accounting ----------------------------------------------------------
    def start_pack(self) -> None:
        """The advertisement is read; what follows is the pack."""
        self._count, self._limit, self._what = 0, self.policy.max_pack, "pack"

    def received(self, n: int) -> None:
        self.check()
        if n:
            self._last = time.monotonic()
            if not self._connected:
                self._connected = True
                self._timeout = self.policy.inactivity_timeout
        self._count += n
        if self._count > self._limit:
            self.abort(f"the remote sent a {self._what} larger than {self._limit} bytes")
            self.check()

    def reader(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        def guarded(size: int = -1) -> bytes:
            self.check()
            data = read(size)
            self.received(len(data))
            return data

        return guarded

    # -- the watchdog --------------------------------------------------------
    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self._last = time.monotonic()  # the fetch may have waited for a thread
        self._deadline = self._last + self.policy.max_time
        watchdog = threading.Thread(target=self._watch, name="fetch-watchdog", daemon=True)
        watchdog.start()
        try:
            yield
        finally:
            self._done.set()
            watchdog.join()
            with self._lock:
                actions, self._on_end = self._on_end, []
            for action in actions:
                with contextlib.suppress(Exception):
                    action()

    def received_all(self) -> None:
        """The remote is done: checking what it sent is not inactivity, but
        it still counts towards the time limit (a small pack can take long
        to check)."""
        self._received = True

    def _watch(self) -> None:
        while True:
            now = time.monotonic()
            if now >= self._deadline:
                self.abort(f"the fetch took more than {self.policy.max_time:g} s")
                return
            wait = self._deadline - now
            if not self._received:
                left = self._last + self._timeout - now
                if left <= 0:
                    if self._connected:
                        self.abort(f"no data from the remote for {self._timeout:g} s")
                    else:
                        self.abort(f"no answer from the remote within {self._timeout:g} s")
                    return
                wait = min(wait, left)
            if self._done.wait(wait):
                return

    def explain(self, exc: BaseException) -> str | None:
        """Why the fetch failed, if it was one of the guard's bounds (or a
        socket timeout); None for other failures."""
        if self.reason is not None:
            return self.reason
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, TimeoutError | socket.timeout):
                return self.explain_timeout()
            seen = seen.__cause__ or seen.__context__
        return None

    def explain_timeout(self) -> str:
        if self._connected:
            return f"no data from the remote for {self.policy.inactivity_timeout:g} s"
        return f"no answer from the remote within {self.policy.connect_timeout:g} s"
