"""Listen addresses: `tcp://HOST[:PORT]`, `unix:///path` (or upstream's `file://`), `fd://N`."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass

import trio

DEFAULT_PORT = 5640


class EndpointError(ValueError):
    pass


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
            host, _, tail = rest[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
        elif rest.count(":") == 1:
            host, _, port_text = rest.rpartition(":")
        else:
            host, port_text = rest, ""
        if not host:
            raise EndpointError(f"{text}: missing host; use tcp://host:port")
        if not port_text:
            return Endpoint("tcp", host=host, port=default_port)
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
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
        if not num.isdigit():
            raise EndpointError(f"{text}: use fd://N")
        return Endpoint("fd", fd=int(num))
    raise EndpointError(f"{text}: invalid endpoint (use tcp://, unix:// or fd://)")


def parse_endpoints(text: str) -> list[Endpoint]:
    return [parse_endpoint(part.strip()) for part in text.split(",") if part.strip()]


async def open_listeners(endpoint: Endpoint) -> list[trio.SocketListener]:
    """Bind the endpoint (SO_REUSEADDR, backlog 128); raises OSError on failure."""
    if endpoint.scheme == "tcp":
        return await trio.open_tcp_listeners(endpoint.port, host=endpoint.host, backlog=128)
    if endpoint.scheme == "unix":
        with contextlib.suppress(FileNotFoundError):
            if not os.path.isdir(endpoint.path):
                os.unlink(endpoint.path)  # a stale socket from an earlier run
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(endpoint.path)
        sock.listen(128)
        return [trio.SocketListener(sock)]
    raw = socket.socket(fileno=endpoint.fd)
    return [trio.SocketListener(trio.socket.from_stdlib_socket(raw))]
