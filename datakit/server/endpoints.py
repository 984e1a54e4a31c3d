"""Listen addresses: `tcp://HOST[:PORT]`, `unix:///path` (or upstream's `file://`), `fd://N`."""

from __future__ import annotations

import contextlib
import errno as E
import os
import socket
import stat
from dataclasses import dataclass

import trio

DEFAULT_PORT = 5640
MAX_FD = 2**31 - 1  # a C int


class EndpointError(ValueError):
    pass


def is_decimal(text: str) -> bool:
    """Only 0-9: str.isdigit() also accepts digits int() refuses ("\u00b2")."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.scheme == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        if self.scheme == "unix":
            return f"unix://{self.path}"
        return f"fd://{self.fd}"


def parse_endpoint(text: str, default_port: int = DEFAULT_PORT) -> Endpoint:
    if text.startswith("tcp://"):
        rest = text[len("tcp://") :]
        if rest.startswith("["):  # [v6]:port
            host, bracket, tail = rest[1:].partition("]")
            if not bracket or (tail and not tail.startswith(":")):
                raise EndpointError(f"{text}: use tcp://[v6-address]:port")
            port_text = tail[1:] if tail.startswith(":") else ""
        elif rest.count(":") == 1:
            host, _, port_text = rest.rpartition(":")
        else:
            host, port_text = rest, ""
        if not host:
            raise EndpointError(f"{text}: missing host; use tcp://host:port")
        if not port_text:
            return Endpoint("tcp", host=host, port=default_port)
        if not is_decimal(port_text) or not 0 <= int(port_text) <= 65535:
            raise EndpointError(f"{text}: use tcp://host:port")
        return Endpoint("tcp", host=host, port=int(port_text))
    for prefix in ("unix://", "file://"):
        if text.startswith(prefix):
            path = text[len(prefix) :]
            if not path:
                raise EndpointError(f"{text}: missing socket path")
            return Endpoint("unix", path=path)
    if text.startswith("fd://"):
        num = text[len("fd://") :]
        if not is_decimal(num) or int(num) > MAX_FD:
            raise EndpointError(f"{text}: use fd://N")
        return Endpoint("fd", fd=int(num))
    raise EndpointError(f"{text}: invalid endpoint (use tcp://, unix:// or fd://)")


def parse_endpoints(text: str) -> list[Endpoint]:
    return [parse_endpoint(part.strip()) for part in text.split(",") if part.strip()]


async def open_listeners(endpoint: Endpoint) -> list[trio.SocketListener]:
    """Bind the endpoint (SO_REUSEADDR, backlog 128); raises OSError on failure."""
    if endpoint.scheme == "tcp":
        try:
            return await trio.open_tcp_listeners(endpoint.port, host=endpoint.host, backlog=128)
        except UnicodeError as exc:  # from IDNA: a label too long or empty, a bad character
            raise OSError(E.EINVAL, f"invalid host name {endpoint.host!r}") from exc
    if endpoint.scheme == "unix":
        _remove_stale_socket(endpoint.path)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(endpoint.path)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        return [trio.SocketListener(sock)]
    raw = socket.socket(fileno=endpoint.fd)
    try:
        return [trio.SocketListener(trio.socket.from_stdlib_socket(raw))]
    except ValueError as exc:  # a datagram socket, or one nobody called listen() on
        raw.detach()  # not ours to close
        raise OSError(E.EINVAL, "not a listening stream socket") from exc


def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file nothing answers on (left by a server that was killed).

    A socket a server still answers on is left alone, and so is anything that
    is not a socket: bind then fails with "Address already in use"."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except OSError:
        return  # missing (the common case) or unreachable: bind will say
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        except OSError:
            pass  # e.g. a busy server (backlog full): not ours to remove


def socket_file_id(endpoint: Endpoint) -> tuple[int, int] | None:
    """What identifies the socket file a Unix endpoint bound (None for others)."""
    if endpoint.scheme != "unix":
        return None
    try:
        st = os.stat(endpoint.path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_socket_file(endpoint: Endpoint, file_id: tuple[int, int] | None) -> None:
    """Unlink a Unix endpoint's socket on shutdown, unless another server has
    replaced it since (then it is not ours)."""
    if file_id is None or socket_file_id(endpoint) != file_id:
        return
    with contextlib.suppress(OSError):
        os.unlink(endpoint.path)
