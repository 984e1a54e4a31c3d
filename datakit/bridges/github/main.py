"""The GitHub bridge as a trio service: startup, triggers, reconnection.

Startup (spec/bridges.md §3.2): a branch with no commit gets ``README.md``
(``Initial commit``), the ``-r`` repositories get their ``.monitor`` files
(``initial commit``), then the first step runs. Afterwards a step runs
whenever a trigger fires — the branch head moved, webhook events arrived,
the resync or poll timer expired, or a failed GitHub call is due for a
retry — with triggers coalesced and one step at a time (:class:`Triggers`).

When the database goes away (a server restart) the session ends, the
bridge waits with back-off and starts a new one: a fresh first sync, as
upstream did on reconnection. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from prometheus_client import Counter

from datakit.bridges import service
from datakit.bridges.github.sync import API, Outcome, Sync, Trigger, Webhook
from datakit.client import ABORT, AGAIN, Branch, Connection, connect
from datakit.github import tree as layout

if TYPE_CHECKING:
    from datakit.bridges.service import StoreAddress
    from datakit.github.capabilities import Capabilities
    from datakit.github.model import Event, Repo

log = logging.getLogger("datakit.bridges.github")

RETRY_FIRST = 1.0
RETRY_MAX = 60.0
"""Back-off after a step whose GitHub calls failed, and after losing the
database: first delay and ceiling, doubling in between."""


@dataclass(frozen=True)
class Config:
    """Every setting of the bridge, checked (``cli.config_of``)."""

    endpoint: StoreAddress | None  # None: --no-datakit
    branch: str
    repositories: tuple[Repo, ...]
    capabilities: Capabilities
    github_url: str
    token: str | None
    webhook: str | None  # the public URL
    webhook_path: str | None
    webhook_listen: tuple[str, int] | None
    webhook_secret: bytes | None
    resync_interval: float | None
    poll_interval: float | None
    prometheus: tuple[str, int] | None


STEPS = Counter(
    "datakit_github_bridge_syncs_total",
    "Reconciliation steps, by outcome (committed, unchanged, failed: a GitHub call "
    "failed and is retried, gave_up: the branch kept moving).",
    ["outcome"],
    registry=service.REGISTRY,
)


def _count(outcome: Outcome) -> None:
    """Metrics and one log line per step (tests wait for "step done")."""
    if outcome.gave_up:
        kind = "gave_up"
    elif outcome.failed:
        kind = "failed"
    elif outcome.committed is not None:
        kind = "committed"
    else:
        kind = "unchanged"
    STEPS.labels(kind).inc()
    base = outcome.base.id if outcome.base is not None else "none"
    log.info("step done: %s, %d sent to GitHub, from %s", kind, len(outcome.pushed), base)


class Triggers:
    """Pending reasons to run a step, coalesced: however many fire while a
    step runs, the next step runs once and sees them all."""

    def __init__(self) -> None:
        self._pending: Trigger | None = None
        self._event = trio.Event()

    def add(self, trigger: Trigger) -> None:
        if self._pending is None:
            self._pending = trigger
        else:
            self._pending.merge(trigger)
        self._event.set()

    async def next(self) -> Trigger:
        await self._event.wait()
        self._event = trio.Event()
        trigger, self._pending = self._pending, None
        return trigger or Trigger()


def startup(branch: Branch, repositories: tuple[Repo, ...]) -> None:
    """§3.2: ``README.md`` on a branch with no commit, then the ``.monitor``
    files of ``-r`` (one commit, only when some are missing)."""
    if branch.head() is None:
        with branch.transaction() as tx:
            layout.write_readme(tx)
            tx.commit("Initial commit")
        log.info("%s initialised with README.md", branch.name)
    if not repositories:
        return
    with branch.transaction() as tx:
        present = layout.monitored(tx)
        added = [repo for repo in repositories if repo not in present]
        for repo in added:
            layout.write_monitor(tx, repo)
        if added:
            tx.commit("initial commit")
            log.info("now monitoring %s", ", ".join(str(r) for r in added))


async def _watch_head(branch: Branch, triggers: Triggers) -> None:
    """Wake a step each time the branch head moves.

    The client's watch blocks, so it runs in a thread that is waited for,
    never abandoned: on cancellation the ``cancel`` event stops it within
    50 ms. (An abandoned thread still inside the client when the
    interpreter shuts down can abort the process instead of exiting 0.)"""
    token = trio.lowlevel.current_trio_token()
    cancel = threading.Event()

    def changed(_head: object) -> object:
        if cancel.is_set():
            return ABORT
        try:
            trio.from_thread.run_sync(lambda: triggers.add(Trigger(head=True)), trio_token=token)
        except trio.RunFinishedError:
            return ABORT
        return AGAIN

    async def stop_on_cancel() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancel.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_cancel)
        try:
            await trio.to_thread.run_sync(lambda: branch.wait_for_head(changed, cancel=cancel))
        finally:
            cancel.set()
        nursery.cancel_scope.cancel()
    raise EOFError("the watch on the branch head ended")


async def _every(seconds: float, triggers: Triggers, make: Callable[[], Trigger]) -> None:
    while True:
        await trio.sleep(seconds)
        triggers.add(make())


async def _forward(events: trio.MemoryReceiveChannel[Event], triggers: Triggers) -> None:
    async for event in events:
        batch = [event]
        while True:  # take everything queued: one step for a burst
            try:
                batch.append(events.receive_nowait())
            except trio.WouldBlock:
                break
        triggers.add(Trigger(events=batch))


async def session(
    config: Config,
    api: API,
    conn: Connection,
    events: trio.MemoryReceiveChannel[Event] | None,
    webhook: Webhook | None,
    errors: tuple[type[BaseException], ...],
) -> None:
    """One connection's life: startup, then steps until the connection fails."""
    lost = service.TRANSPORT_ERRORS

    def start() -> Branch:
        branch = conn.branch(config.branch)
        startup(branch, config.repositories)
        return branch

    branch = await trio.to_thread.run_sync(start)
    sync = Sync(api, branch, config.capabilities, errors=errors, webhook=webhook)
    triggers = Triggers()
    triggers.add(Trigger())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_head, branch, triggers)
        if events is not None:
            nursery.start_soon(_forward, events, triggers)
        if config.resync_interval is not None:
            nursery.start_soon(
                _every, config.resync_interval, triggers, lambda: Trigger(resync=True)
            )
        if config.poll_interval is not None:
            nursery.start_soon(_every, config.poll_interval, triggers, lambda: Trigger(poll=True))
        delay = RETRY_FIRST
        retry: trio.CancelScope | None = None
        while True:
            trigger = await triggers.next()
            if retry is not None:
                retry.cancel()
                retry = None
            try:
                outcome = await sync.step(trigger)
            except lost:
                raise
            except Exception:
                # Not a GitHub failure (those are handled) nor a lost database:
                # log it and try again later rather than stop the bridge.
                log.exception("the step failed; trying again in %.0f s", delay)
                outcome = Outcome(failed=True)
            _count(outcome)
            if outcome.failed or outcome.gave_up:
                retry = trio.CancelScope()
                nursery.start_soon(_retry_after, delay, triggers, retry)
                delay = min(delay * 2, RETRY_MAX)
            else:
                delay = RETRY_FIRST


async def _retry_after(seconds: float, triggers: Triggers, scope: trio.CancelScope) -> None:
    with scope:
        await trio.sleep(seconds)
        triggers.add(Trigger())


def make_api(config: Config) -> tuple[API, tuple[type[BaseException], ...]]:
    """The GitHub client and the error class its calls raise."""
    from datakit.bridges.github.api import GitHubAPI, GitHubError

    return GitHubAPI(config.github_url, config.token), (GitHubError,)


async def serve(
    config: Config,
    *,
    api: API | None = None,
    errors: tuple[type[BaseException], ...] | None = None,
    first: Connection | None = None,
) -> None:
    """Run the bridge until cancelled. ``first``: a connection opened (and
    checked) by the caller, used for the first session."""
    from datakit.bridges.github import webhooks

    log.info(
        "starting: database %s, branch %s, GitHub at %s, capabilities %s",
        config.endpoint.text if config.endpoint is not None else "none",
        config.branch,
        config.github_url,
        config.capabilities,
    )
    async with trio.open_nursery() as nursery:
        if config.prometheus is not None:
            host, port = config.prometheus
            await nursery.start(service.serve_prometheus, host, port)
        if config.endpoint is None:
            log.warning("--no-datakit: not connecting to a database; serving metrics only")
            await trio.sleep_forever()
        if api is None:
            api, errors = make_api(config)
        assert errors is not None
        hook: Webhook | None = None
        receive: trio.MemoryReceiveChannel[Event] | None = None
        if config.webhook is not None and config.webhook_listen is not None:
            secret = config.webhook_secret or b""
            hook = Webhook(config.webhook, secret.decode())
            send, receive = trio.open_memory_channel["Event"](1000)
            app = webhooks.make_app(secret, config.webhook_path or "/", send)
            # Build githubkit's webhook models (seconds) before listening, in a
            # thread that is waited for: a thread abandoned while still in
            # pydantic's Rust code when the interpreter exits aborts the
            # process (SIGTERM during start-up gave status -6, not 0).
            await trio.to_thread.run_sync(webhooks.warm_up)
            host, port = config.webhook_listen
            bound = await nursery.start(webhooks.serve, app, host, port)
            _announce(f"webhooks at {bound[0] if bound else f'{host}:{port}'}"
                      f"{config.webhook_path or '/'}")
        nursery.start_soon(_sessions, config, api, errors, receive, hook, first)


async def _sessions(
    config: Config,
    api: API,
    errors: tuple[type[BaseException], ...],
    events: trio.MemoryReceiveChannel[Event] | None,
    webhook: Webhook | None,
    first: Connection | None,
) -> None:
    assert config.endpoint is not None
    address = config.endpoint.target
    lost = service.TRANSPORT_ERRORS
    delay = RETRY_FIRST
    conn = first
    while True:
        if conn is None:
            try:
                conn = await trio.to_thread.run_sync(
                    lambda: _connect(address), abandon_on_cancel=True
                )
            except lost as e:
                log.debug("database at %s still unreachable: %s", address, e)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            log.warning("reconnected to the database at %s", address)
        delay = RETRY_FIRST
        try:
            await session(config, api, conn, events, webhook, errors)
        except* lost as group:
            cause = group.exceptions[0]
            log.warning("lost the database at %s (%s); reconnecting", address,
                        cause or type(cause).__name__)
        finally:
            dead, conn = conn, None
            await trio.to_thread.run_sync(_close, dead)
        await trio.sleep(delay)


def _connect(address: str) -> Connection:
    conn = connect(address)
    conn.branches()  # a server that accepted the connection but does not answer fails here
    return conn


def _close(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:
        log.debug("closing the database connection", exc_info=True)


def _announce(text: str) -> None:
    """Where the bridge listens: said at the default verbosity (tests read it)."""
    print(f"datakit-bridge-github: {text}", file=sys.stderr, flush=True)


def run_service(config: Config, prog: str = "datakit-bridge-github") -> int:
    """Check the database, then run until SIGTERM/SIGINT (exit 0); a
    database that is not there at start is one line and exit 1."""
    first = None
    if config.endpoint is not None:
        try:
            first = _connect(config.endpoint.target)
        except Exception as e:  # OSError, the Git backend's BackendError, ...
            print(f"{prog}: {service.describe_connect_error(config.endpoint, e)}",
                  file=sys.stderr)
            return 1
    try:
        return service.run_service(prog, lambda: serve(config, first=first))
    finally:
        if first is not None:
            _close(first)


if __name__ == "__main__":
    from datakit.bridges.commands import github_main

    sys.exit(github_main())
