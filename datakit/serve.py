"""Wiring of `datakit serve`: store, filesystem, 9p listeners, metrics, auto-push."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import trio

from datakit import __version__, metrics
from datakit.server import EndpointError, Limits, bind_all, parse_endpoints, serve_9p
from datakit.server.accept import default_max_connections, raise_fd_limit
from datakit.server.endpoints import Endpoint
from datakit.vfs import Directory

log = logging.getLogger("datakit")

POLL_INTERVAL = 0.5  # seconds between checks for ref changes made by other processes


@dataclass
class ServeConfig:
    endpoints: list[Endpoint]
    git: str | None = None
    auto_push: str | None = None
    prometheus: tuple[str, int] | None = None
    max_msize: int = 1024 * 1024
    read_only: bool = False
    example_tree: bool = False
    max_connections: int | None = None  # None: from the fd limit (server.accept)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeConfig:
        from datakit.cli import UsageError

        try:
            endpoints = parse_endpoints(args.listen_9p)
        except EndpointError as exc:
            raise UsageError(str(exc)) from None
        if not endpoints:
            raise UsageError("--listen-9p: no endpoint given")
        if args.auto_push and not args.git:
            raise UsageError("--auto-push needs --git (in-memory stores cannot be pushed)")
        prometheus = None
        if args.listen_prometheus:
            prometheus = parse_host_port(args.listen_prometheus)
        return cls(
            endpoints=endpoints,
            git=args.git,
            auto_push=args.auto_push,
            prometheus=prometheus,
            max_msize=args.max_msize,
            read_only=args.read_only,
            example_tree=args.example_tree,
            max_connections=args.max_connections,
        )


def parse_host_port(text: str) -> tuple[str, int]:
    from datakit.cli import UsageError

    host, sep, port = text.rpartition(":")
    if not sep:
        host = "0.0.0.0"
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen-prometheus {text!r}: use PORT or HOST:PORT")
    return host, int(port)


async def _serve_until_signal(config: ServeConfig) -> None:
    # SIGTERM (docker stop, systemd) stops the server like Ctrl-C: as PID 1 in a
    # container it would otherwise be ignored until the SIGKILL.
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            await nursery.start(serve, config)
            async for _ in signals:
                log.info("SIGTERM: shutting down")
                nursery.cancel_scope.cancel()
                break


def run(config: ServeConfig) -> int:
    logging.getLogger().addHandler(metrics.LogCounter())
    raise_fd_limit()  # before anything opens files; the connection bound derives from it
    try:
        trio.run(_serve_until_signal, config)
    except BaseException as exc:
        # trio >= 0.25 wraps errors raised in a nursery in an exception group.
        leaves = _leaves(exc)
        bad_address = next((e for e in leaves if isinstance(e, OSError)), None)
        if bad_address is not None:  # an address we cannot listen on: a usage problem
            print(f"datakit: {bad_address.strerror or bad_address}", file=sys.stderr)
            return 2
        if all(isinstance(e, KeyboardInterrupt) for e in leaves):
            return 1
        raise
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


async def serve(
    config: ServeConfig, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    log.info("Starting datakit %s ...", __version__)
    make_root: Callable[[], Directory]
    store = None
    if config.example_tree:
        from datakit.vfs.tmpfs import example_tree

        shared = example_tree()

        def make_root() -> Directory:
            return shared
    else:
        from datakit.fs import Database
        from datakit.store import Store

        if config.git:
            store = Store.open(config.git)
            log.info("Using Git repository at %s", config.git)
        else:
            store = Store.memory()
            log.info("Using an in-memory store (use --git PATH for a persistent one)")
        database = Database(store)
        make_root = database.connect

    listeners = await bind_all(config.endpoints)
    metric_listeners = []
    if config.prometheus:
        host, port = config.prometheus
        try:
            metric_listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise OSError(
                exc.errno, f"Failed to listen for Prometheus on {host}:{port}: {exc.strerror}"
            ) from exc
    limits = Limits(max_msize=config.max_msize)
    max_connections = config.max_connections or default_max_connections()
    log.info("Serving at most %d connections at once", max_connections)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_9p(
                listeners,
                make_root,
                limits=limits,
                read_only=config.read_only,
                max_connections=max_connections,
                task_status=task_status,
            )
        )
        for endpoint in config.endpoints:
            log.info("Listening for 9p on %s", endpoint)
        if metric_listeners:
            await nursery.start(metrics.serve_metrics, metric_listeners)
        if store is not None:
            nursery.start_soon(_poll_refs, store)
            if config.auto_push:
                from datakit.push import AutoPusher

                pusher = AutoPusher(store, config.git or "", config.auto_push)
                nursery.start_soon(pusher.run)
        task_status.started()


async def _poll_refs(store: object) -> None:
    """Notice branch changes made by other processes (`git` on the same repo)."""
    poll = store.poll  # type: ignore[attr-defined]
    while True:
        await trio.sleep(POLL_INTERVAL)
        try:
            poll()
        except Exception:
            log.exception("polling the repository for ref changes failed")
