"""Serve the web UI with Hypercorn's trio worker, inside the CI's own trio
process (spec ci.md B.6): the engine and the pages share one event loop and
one :class:`CIView`, so no state has to cross a process boundary."""

from __future__ import annotations

import logging
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from prometheus_client import CollectorRegistry

from datakit.bridges.service import StartupError, announce
from datakit.ci.model import CIView
from datakit.ci.web.app import create_app

_hypercorn_log = logging.getLogger("datakit.ci.web.hypercorn")


class _NoRunningOn(logging.Filter):
    """Hypercorn's own "Running on … (CTRL + C to quit)": the CI announces
    its address once, in the bridges' format."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Running on")


_hypercorn_log.addFilter(_NoRunningOn())


def _bound(binds: list[str]) -> tuple[str, int]:
    """``http://127.0.0.1:8080`` or ``http://[::1]:8080`` -> (host, port)."""
    address = binds[0].split("://", 1)[-1]
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def serve_web(
    view: CIView,
    host: str,
    port: int,
    *,
    token: str | None,
    registry: CollectorRegistry | None = None,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled or until ``shutdown`` is set (then open
    connections get Hypercorn's graceful timeout). Port 0 binds a free port;
    the bound (host, port) is reported through ``task_status`` and
    announced as ``web UI at http://H:P/``."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = _hypercorn_log
    config.graceful_timeout = 2.0
    app = create_app(view, token=token, registry=registry)
    stop = shutdown if shutdown is not None else trio.Event()

    async def trigger() -> None:
        await stop.wait()

    async def run(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await serve(cast(Any, app), config, shutdown_trigger=trigger, task_status=task_status)

    failed: OSError | None = None
    async with trio.open_nursery() as nursery:
        try:
            binds = await nursery.start(run)
        except BaseException as exc:
            failed = _os_error(exc)
            if failed is None:
                raise
        else:
            bound = _bound(binds)
            announce(f"web UI at http://{_url_host(bound[0])}:{bound[1]}/")
            task_status.started(bound)
    if failed is not None:  # raised here, outside the nursery: not in a group
        raise StartupError(f"--listen {host}:{port}: {failed.strerror or failed}")


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError (a failed bind) in ``exc``, however deep in groups."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["serve_web"]
