"""Loopback ports for the servers tests start (datakit, git daemon, podman)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port nobody listens on (for now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
