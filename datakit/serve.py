"""Wiring of `datakit serve`: store, filesystem, 9p listeners, metrics, auto-push."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from datakit import __version__, metrics, metrics_http
from datakit.server import Limits, serve_9p
from datakit.server.accept import default_max_connections, raise_fd_limit
from datakit.server.endpoints import Endpoint, remove_socket_file, socket_file_id
from datakit.server.serve import bind_each, bound_address
from datakit.store import Limits as StoreLimits
from datakit.store import RemotePolicy, shown_url
from datakit.vfs import Directory

if TYPE_CHECKING:
    from datakit.fs import Database
    from datakit.store import Store

log = logging.getLogger("datakit")

POLL_INTERVAL = 0.5  # seconds between checks for ref changes made by other processes


@dataclass
class ServeConfig:
    """What `datakit serve` was asked to do, already validated (by
    :func:`datakit.cli.serve_config` for the command line)."""

    endpoints: list[Endpoint]
    git: str | None = None
    auto_push: str | None = None
    auto_push_timeout: float = 300.0
    prometheus: tuple[str, int] | None = None
    max_msize: int = 1024 * 1024
    read_only: bool = False
    example_tree: bool = False
    remotes: RemotePolicy = field(default_factory=RemotePolicy)
    # Memory bounds (None: the store's defaults, see datakit.store.Limits).
    cache_size: int | None = None
    max_file_size: int | None = None
    spill_threshold: int | None = None
    max_connections: int | None = None  # None: from the fd limit (server.accept)
    handshake_timeout: float = Limits.handshake_timeout  # seconds to Tversion + Tattach
    # More than one machine (docs/operations.md): the Git endpoint, pushes
    # to it (None, "ff" or "force"), and following a primary as a replica.
    git_endpoints: list[Endpoint] = field(default_factory=list)
    git_push: str | None = None
    git_timeout: float = 60.0
    max_git_connections: int = 16
    mirror: str | None = None
    mirror_interval: float = 0.25

    def store_limits(self) -> StoreLimits:
        """The store's memory bounds from the flags."""
        d = StoreLimits()
        return StoreLimits(
            cache_size=d.cache_size if self.cache_size is None else self.cache_size,
            max_file_size=d.max_file_size if self.max_file_size is None else self.max_file_size,
            spill_threshold=(
                d.spill_threshold if self.spill_threshold is None else self.spill_threshold
            ),
        )


async def _serve_until_signal(config: ServeConfig) -> None:
    # SIGTERM (docker stop, systemd) stops the server like Ctrl-C: as PID 1 in a
    # container it would otherwise be ignored until the SIGKILL. SIGHUP (the
    # terminal went away) too: by default it kills at once, leaving the Unix
    # socket behind and maybe a ref update half done.
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
            await nursery.start(serve, config)
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


class StartupError(Exception):
    """Bad input found while starting (a repository, an address): one line, exit 2."""


def run(config: ServeConfig) -> int:
    logging.getLogger().addHandler(metrics.LogCounter())
    raise_fd_limit()  # before anything opens files; the connection bound derives from it
    try:
        trio.run(_serve_until_signal, config)
    except BaseException as exc:
        # trio >= 0.25 wraps errors raised in a nursery in an exception group.
        leaves = _leaves(exc)
        bad_input = next((e for e in leaves if isinstance(e, StartupError)), None)
        if bad_input is not None:
            print(f"datakit: {bad_input}", file=sys.stderr)
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
    database = None
    if config.example_tree:
        from datakit.vfs.tmpfs import example_tree

        shared = example_tree(config.store_limits().max_file_size)

        def make_root() -> Directory:
            return shared
    else:
        from datakit.fs import Database
        from datakit.store import Store

        if config.git:
            store = _open_store(config.git, config.store_limits())
            log.info("Using Git repository at %s", config.git)
            _warn_if_work_tree(store, config.git)
        else:
            store = Store.memory(config.store_limits())
            log.info("Using an in-memory store (use --git PATH for a persistent one)")
        database = Database(store, remotes=config.remotes)
        make_root = database.connect

    all_endpoints = config.endpoints + config.git_endpoints
    try:
        bound = await bind_each(all_endpoints)
    except OSError as exc:
        raise StartupError(exc.strerror or str(exc)) from exc
    git_bound = bound[len(config.endpoints) :]
    bound = bound[: len(config.endpoints)]
    listeners = [listener for group in bound for listener in group]
    socket_files = [socket_file_id(endpoint) for endpoint in all_endpoints]
    metric_listeners = []
    if config.prometheus:
        host, port = config.prometheus
        try:
            metric_listeners = await trio.open_tcp_listeners(port, host=host)
        except (OSError, UnicodeError) as exc:  # UnicodeError: IDNA refused the host name
            for listener in listeners + [lst for group in git_bound for lst in group]:
                await listener.aclose()
            _remove_sockets(all_endpoints, socket_files)
            reason = exc.strerror if isinstance(exc, OSError) else "invalid host name"
            raise StartupError(
                f"Failed to listen for Prometheus on {host}:{port}: {reason or exc}"
            ) from exc
    read_only_reason = None
    if config.mirror:  # a replica: only the primary takes writes
        read_only_reason = f"a replica of {shown_url(config.mirror)}; write to the primary"
    limits = Limits(max_msize=config.max_msize, handshake_timeout=config.handshake_timeout)
    max_connections = config.max_connections or default_max_connections()
    log.info("Serving at most %d connections at once", max_connections)
    try:
        async with trio.open_nursery() as nursery:
            if database is not None and config.mirror:  # first: a URL refused ends the start
                await nursery.start(_follow_primary, config, database)
            await nursery.start(
                lambda task_status: serve_9p(
                    listeners,
                    make_root,
                    limits=limits,
                    read_only=config.read_only or read_only_reason is not None,
                    read_only_reason=read_only_reason,
                    max_connections=max_connections,
                    task_status=task_status,
                )
            )
            for endpoint, group in zip(config.endpoints, bound, strict=True):
                _announce(f"listening on {bound_address(endpoint, group)}")
            if database is not None and git_bound:
                await nursery.start(_serve_git, config, database, git_bound)
            if metric_listeners:
                await nursery.start(metrics_http.serve_metrics, metric_listeners)
                host, port = _sockname(metric_listeners[0])
                _announce(f"metrics at http://{host}:{port}/metrics")
            if store is not None:
                nursery.start_soon(_poll_refs, store)
                if config.auto_push:
                    from datakit.push import AutoPusher

                    pusher = AutoPusher(
                        store, config.git or "", config.auto_push, timeout=config.auto_push_timeout
                    )
                    nursery.start_soon(pusher.run)
            task_status.started()
    finally:
        # On a clean shutdown (SIGTERM, Ctrl-C) the Unix sockets go too.
        _remove_sockets(all_endpoints, socket_files)


async def _serve_git(
    config: ServeConfig,
    database: Database,
    bound: list[list[trio.SocketListener]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    from datakit.gitserver import GitContext, GitServer

    limits = config.store_limits()
    context = GitContext(
        store=database.store,
        write=database.write,
        push=config.git_push,
        max_pack=config.remotes.max_pack,
        max_object=limits.max_file_size,
    )
    server = GitServer(
        context, timeout=config.git_timeout, max_connections=config.max_git_connections
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, [lst for group in bound for lst in group])
        for endpoint, group in zip(config.git_endpoints, bound, strict=True):
            push = {None: "", "ff": ", pushes allowed", "force": ", pushes (forced too) allowed"}
            _announce(
                f"git on git://{_git_address(bound_address(endpoint, group))}/"
                f"{push[config.git_push]}"
            )
        task_status.started()


async def _follow_primary(
    config: ServeConfig,
    database: Database,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A replica (--mirror): follow the primary's branches until cancelled
    (see datakit.replica). A URL the remote policy refuses is bad input."""
    from datakit.replica import Replica
    from datakit.store import FetchError, check_remote

    assert config.mirror is not None
    try:
        check_remote(config.mirror, config.remotes)
    except FetchError as exc:
        raise StartupError(f"--mirror: {exc}".replace("error: ", "", 1)) from exc
    replica = Replica(
        database.store,
        database.write,
        config.mirror,
        policy=config.remotes,
        interval=config.mirror_interval,
    )
    log.info("Following the primary %s (a read-only replica)", shown_url(config.mirror))
    task_status.started()
    await replica.run()


def _git_address(endpoint: Endpoint) -> str:
    if endpoint.scheme == "tcp":
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        return f"{host}:{endpoint.port}"
    return str(endpoint)


def _remove_sockets(endpoints: list[Endpoint], file_ids: list[tuple[int, int] | None]) -> None:
    for endpoint, file_id in zip(endpoints, file_ids, strict=True):
        remove_socket_file(endpoint, file_id)


def _open_store(path: str, limits: StoreLimits) -> Store:
    from datakit.store import Store, StoreError

    try:
        return Store.open(path, limits=limits)
    except (StoreError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartupError(reason if path in reason else f"--git {path}: {reason}") from exc


def _warn_if_work_tree(store: Store, path: str) -> None:
    """The server moves branches in the git directory only; a checked-out one
    then looks, to `git status` in the work tree, like the commits reversed."""
    branch = store.checked_out_branch()
    if branch is None:
        return
    log.warning(
        "%s has a work tree: commits made through DataKit move its branches but not its "
        "files, so once the checked-out branch (%s) moves, `git status` there shows the "
        "commits as reversed staged changes. Serve a bare repository (git clone --bare), or "
        "run `git reset --hard` in the work tree to catch up (see docs/operations.md).",
        path,
        branch,
    )


def _announce(text: str) -> None:
    """Where the server listens, said at the default verbosity as servers do.

    Not a log warning (it would count as one in the metrics); with -v it is
    logged at info like the rest; with -q or --verbosity error it is not said."""
    if log.isEnabledFor(logging.INFO):
        log.info("%s", text[:1].upper() + text[1:])
    elif log.isEnabledFor(logging.WARNING):
        print(f"datakit: {text}", file=sys.stderr, flush=True)


def _sockname(listener: trio.SocketListener) -> tuple[str, int]:
    host, port = listener.socket.getsockname()[:2]
    return (f"[{host}]" if ":" in host else host), port


async def _poll_refs(store: object) -> None:
    """Notice branch changes made by other processes (`git` on the same repo)."""
    poll = store.poll  # type: ignore[attr-defined]
    while True:
        await trio.sleep(POLL_INTERVAL)
        try:
            poll()
        except Exception:
            log.exception("polling the repository for ref changes failed")
