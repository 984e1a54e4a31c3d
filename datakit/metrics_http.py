"""The Prometheus endpoint: ``GET /metrics`` over HTTP/1.1 on trio.

h11 rather than prometheus_client's own server, so no second web framework
(or thread) is needed; the registry itself is :mod:`datakit.metrics`.
"""

from __future__ import annotations

import functools

import h11
import trio
from prometheus_client import CollectorRegistry, generate_latest

from datakit.metrics import REGISTRY

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _response(status: int, body: bytes, content_type: str) -> tuple[h11.Response, bytes]:
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("connection", "close"),
    ]
    return h11.Response(status_code=status, headers=headers), body


async def _handle_http(stream: trio.SocketStream, registry: CollectorRegistry = REGISTRY) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        with trio.move_on_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                break
            if isinstance(event, h11.Request):
                target = event.target.split(b"?", 1)[0]
                if event.method in (b"GET", b"HEAD") and target == b"/metrics":
                    response, body = _response(200, generate_latest(registry), CONTENT_TYPE)
                else:
                    response, body = _response(404, b"Not found\n", "text/plain")
                if event.method == b"HEAD":
                    body = b""
            else:
                response, body = _response(400, b"Bad request\n", "text/plain")
            await stream.send_all(conn.send(response) or b"")
            await stream.send_all(conn.send(h11.Data(data=body)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        with trio.move_on_after(1):
            await stream.send_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\nBad request\n"
            )
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


MAX_SCRAPERS = 16


async def serve_metrics(
    listeners: list[trio.SocketListener],
    *,
    registry: CollectorRegistry = REGISTRY,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``registry`` (the server's by default; applications such as the
    bridges pass their own) on ``listeners``."""
    from datakit.server.accept import serve_bounded

    # Scrapes are few: a flood of connections here must not take the store's fds.
    await serve_bounded(
        functools.partial(_handle_http, registry=registry),
        listeners,
        max_connections=MAX_SCRAPERS,
        what="metrics scrapes open (at most 16)",
        task_status=task_status,
    )
