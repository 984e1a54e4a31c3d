"""dulwich clients for each allowed scheme, every read through a FetchGuard
(see ``_transport``). Imported only when a fetch runs: dulwich's client
module is slow to import."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from typing import Any
from urllib.parse import urlsplit

import urllib3
from dulwich import client as dc
from dulwich.errors import GitProtocolError
from dulwich.protocol import Protocol

from ._errors import FetchError
from ._transport import FetchGuard, check_url, scheme_of, shown_url

_GIT_PORT = 9418


def open_client(url: str, guard: FetchGuard) -> tuple[dc.GitClient, str]:
    """A client for ``url`` and the path to give it; FetchError if the
    guard's policy does not allow the URL's scheme."""
    policy = guard.policy
    shown_as = shown_url(url)
    try:
        check_url(url)
    except ValueError as exc:
        raise FetchError(f"error: cannot fetch {shown_as}: {exc}") from None
    scheme = scheme_of(url)
    if scheme not in policy.schemes:
        shown = "local paths and file://" if scheme == "file" else f"{scheme}://"
        allowed = ",".join(sorted(policy.schemes)) or "none"
        raise FetchError(
            f"error: cannot fetch {shown_as}: {shown} remotes are not allowed by this server "
            f"(allowed: {allowed}; see datakit serve --remote-schemes)"
        )
    parts = urlsplit(url)
    if scheme == "file":
        return LocalClient(guard), parts.path if url.startswith("file://") else url
    if scheme == "git":
        if not parts.hostname:
            raise FetchError(f"error: cannot fetch {shown_as}: no host in the URL")
        return TcpClient(parts.hostname, parts.port, guard), parts.path
    if scheme in ("http", "https"):
        return HttpClient(url, guard), parts.path
    if scheme == "ssh":
        return _ssh_client(url, guard)
    raise FetchError(f"error: cannot fetch {shown_as}: unsupported URL scheme {scheme}")


class TcpClient(dc.TCPGitClient):
    """git:// with a connect timeout and a socket the guard can shut down."""

    def __init__(self, host: str, port: int | None, guard: FetchGuard) -> None:
        super().__init__(host, port)
        self.guard = guard

    def _connect(self, cmd: bytes, path: Any, protocol_version: Any = None) -> Any:
        guard = self.guard
        path = path if isinstance(path, bytes) else path.encode("utf-8")
        sock = socket.create_connection(
            (self._host, self._port or _GIT_PORT), timeout=guard.policy.connect_timeout
        )
        guard.on_abort(lambda: sock.shutdown(socket.SHUT_RDWR))
        sock.settimeout(guard.policy.inactivity_timeout)
        rfile = sock.makefile("rb", -1)
        wfile = sock.makefile("wb", 0)

        def close() -> None:
            rfile.close()
            wfile.close()
            sock.close()

        proto = Protocol(guard.reader(rfile.read), wfile.write, close)
        # Protocol v0: the request carries no version, the answer is the refs.
        self.protocol_version = 0
        if path.startswith(b"/~"):
            path = path[1:]
        proto.send_cmd(b"git-" + cmd, path, b"host=" + self._host.encode("idna"))
        return proto, lambda: False, None


class LocalClient(dc.SubprocessGitClient):
    """A local repository, read by `git upload-pack` in a child process that
    the guard kills on abort (a FIFO or a device in the repository blocks or
    floods the child, not the server). upload-pack runs `git pack-objects`,
    which a FIFO can block for ever after upload-pack is gone: each fetch's
    git processes are a process group of their own, killed whole on abort
    and when the fetch is done with them."""

    def __init__(self, guard: FetchGuard) -> None:
        super().__init__()
        self.guard = guard

    def _connect(self, cmd: bytes, path: Any, protocol_version: Any = None) -> Any:
        guard = self.guard
        if isinstance(path, bytes):
            path = path.decode("utf-8", "surrogateescape")
        timeout = max(1, int(guard.policy.inactivity_timeout))
        proc = subprocess.Popen(
            ["git", cmd.decode("ascii"), f"--timeout={timeout}", "--", path],
            bufsize=0,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # No user or system config: the repository's own config only.
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "HOME": "/nonexistent",
            },
            start_new_session=True,
        )

        def kill_group() -> None:
            if proc.returncode is None:  # not reaped: its pid is not reused
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

        def close() -> None:
            kill_group()  # all that was needed was read
            wrapper.close()

        guard.on_abort(kill_group)
        wrapper = dc.SubprocessWrapper(proc)
        self.protocol_version = 0
        proto = Protocol(guard.reader(wrapper.read), wrapper.write, close)
        return proto, wrapper.can_read, proc.stderr


def _guarded_pools(guard: FetchGuard) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """urllib3 connection pools whose every socket the guard shuts down on
    abort, from the moment it exists: a remote that never answers the
    request (or the TLS handshake) must not hold the fetch either.

    The guard holds a duplicate of the socket: TLS takes the original's
    descriptor over (the original object is then closed), while shutting
    down any descriptor of a socket stops every read on it. The duplicate
    is closed when the fetch ends."""

    def guarded(sock: socket.socket) -> socket.socket:
        twin = sock.dup()
        guard.on_end(twin.close)
        guard.on_abort(lambda: twin.shutdown(socket.SHUT_RDWR))
        return sock

    class Connection(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return guarded(super()._new_conn())

    class TlsConnection(urllib3.connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return guarded(super()._new_conn())

    class Pool(urllib3.HTTPConnectionPool):
        ConnectionCls = Connection

    class TlsPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = TlsConnection

    return {"http": Pool, "https": TlsPool}


class HttpClient(dc.Urllib3HttpGitClient):
    """Connect and read timeouts; every response read through the guard,
    whose abort shuts the sockets down."""

    def __init__(self, url: str, guard: FetchGuard) -> None:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        super().__init__(
            parts._replace(netloc=netloc).geturl(),  # the credentials go apart
            username=parts.username,
            password=parts.password,
            timeout=urllib3.Timeout(  # type: ignore[arg-type]
                connect=guard.policy.connect_timeout, read=guard.policy.inactivity_timeout
            ),
        )
        self.guard = guard
        manager = self.pool_manager  # a plain PoolManager: we give no auth callbacks
        assert isinstance(manager, urllib3.PoolManager)
        manager.pool_classes_by_scheme = _guarded_pools(guard)  # type: ignore[assignment]
        # urllib3 retries a timed-out request three times by default: a dead
        # remote would take four timeouts. Redirects are still followed.
        self.pool_manager.connection_pool_kw["retries"] = urllib3.Retry(
            total=None, connect=0, read=0, status=0, other=0, redirect=5
        )

    def _discover_references(self, *args: Any, **kwargs: Any) -> Any:
        found = super()._discover_references(*args, **kwargs)
        if self.dumb:
            # Static files: dulwich would then read every object (and whole
            # packs) into memory, unbounded by the checks a pack gets.
            raise GitProtocolError("not git's smart HTTP protocol (dumb HTTP is not supported)")
        return found

    def _http_request(self, *args: Any, **kwargs: Any) -> Any:
        self.guard.check()
        resp, read = super()._http_request(*args, **kwargs)
        return resp, self.guard.reader(read)


class _SshVendor(dc.SubprocessSSHVendor):
    """Runs ssh with a connect timeout and no prompts; the child is killed
    on abort and its output counted."""

    def __init__(self, guard: FetchGuard) -> None:
        self.guard = guard

    def run_command(self, *args: Any, **kwargs: Any) -> Any:
        connect = max(1, int(self.guard.policy.connect_timeout))
        kwargs["ssh_command"] = f"ssh -o BatchMode=yes -o ConnectTimeout={connect}"
        con = super().run_command(*args, **kwargs)
        self.guard.on_abort(con.proc.kill)
        con.read = self.guard.reader(con.read)  # type: ignore[assignment]
        return con


def _ssh_client(url: str, guard: FetchGuard) -> tuple[dc.GitClient, str]:
    if "://" in url:
        parts = urlsplit(url)
        host, port, user, path = parts.hostname, parts.port, parts.username, parts.path
    else:  # user@host:path
        match = re.match(r"(?:([^@/]+)@)?([^:/]+):(.*)\Z", url, re.S)
        if match is None:
            raise FetchError(f"error: cannot fetch {shown_url(url)}: not an ssh address")
        user, host, path = match.groups()
        port = None
    if not host:
        raise FetchError(f"error: cannot fetch {shown_url(url)}: no host in the URL")
    ssh = dc.SSHGitClient(host, port=port, username=user, vendor=_SshVendor(guard))
    return ssh, path
