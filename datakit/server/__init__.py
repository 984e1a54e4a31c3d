"""The trio 9p server: listeners, sessions, fids, and the mapping onto vfs nodes."""

from datakit.server.endpoints import (
    DEFAULT_PORT,
    Endpoint,
    EndpointError,
    parse_endpoint,
    parse_endpoints,
)
from datakit.server.serve import bind_all, serve_9p
from datakit.server.session import Limits, Session

__all__ = [
    "DEFAULT_PORT",
    "Endpoint",
    "EndpointError",
    "Limits",
    "Session",
    "bind_all",
    "parse_endpoint",
    "parse_endpoints",
    "serve_9p",
]
