"""``datakit ci --config FILE.toml``: the engine, the web UI and the metrics
endpoint in one trio process (spec ci.md B.1)."""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import IO, NoReturn

import trio

from datakit.bridges import service
from datakit.ci import owner, storage
from datakit.ci.config import ConfigError, load_config, parse_canary
from datakit.ci.engine import Engine
from datakit.ci.model import CIConfig
from datakit.client import Connection, DataKitError
from datakit.options import LEVELS, UsageError, log_level

PROG = "datakit ci"
REQUEST_TIMEOUT = 30.0
log = logging.getLogger("datakit.ci")

FEEDBACK_LOOP = (
    "{source} (source of {repo}) is itself a DataKit store (it has a "
    "github-metadata branch): a feedback loop, as every result the CI commits "
    "would change the repository under test and start another build, forever. "
    "Keep the CI's "
    "database and the repositories it tests separate (spec ci.md A.4)"
)


class Parser(argparse.ArgumentParser):
    """argparse with exit status 1 for bad arguments, as the bridges."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: {message}\n")


def build_parser(prog: str = PROG) -> Parser:
    parser = Parser(
        prog=prog,
        description="DataKitCI: test every branch and PR of the configured projects, "
        "recording statuses, logs and results as commits in DataKit.",
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE.toml", help="the projects and their jobs"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--metadata-store",
        metavar="ADDR",
        help="the DataKit store: tcp:HOST[:PORT], tcp://HOST[:PORT], unix://PATH, "
        "git://PATH or a repository path (default: tcp:localhost:5640)",
    )
    where.add_argument("--datakit", metavar="URL", help="the same as --metadata-store")
    parser.add_argument(
        "--web-ui",
        metavar="URL",
        help="the web UI's public address, used in statuses' target URLs (default: http://LISTEN/)",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="serve the web UI here (default %(default)s; port 0 picks one)",
    )
    parser.add_argument(
        "--workdir",
        default="/var/lib/datakit-ci",
        metavar="DIR",
        help="source mirrors and job checkouts (default %(default)s)",
    )
    parser.add_argument(
        "--canary",
        action="append",
        default=[],
        metavar="TARGET",
        help="test only these targets: USER/REPO/heads/BRANCH, USER/REPO/tags/TAG or "
        "USER/REPO/prs/N (repeatable)",
    )
    parser.add_argument(
        "--listen-prometheus",
        metavar="[HOST:]PORT",
        help="also serve Prometheus metrics at http://HOST:PORT/metrics "
        "(the web UI serves /metrics too)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="the admin token: rebuild and cancel need it (as a bearer token or the "
        "login password); without it the web UI is read-only",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="runs at once (default %(default)s)"
    )
    parser.add_argument(
        "--take-over",
        action="store_true",
        help="start even though the database names another CI as running (it died on another host)",
    )
    logs = parser.add_argument_group("logging")
    logs.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    logs.add_argument("--verbosity", choices=list(LEVELS), help="log level; overrides -v")
    return parser


def read_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror or exc}") from None
    if len(token) < 8:
        raise UsageError(f"--token-file {path}: the token must have at least 8 characters")
    return token


def check_sources(config: CIConfig) -> None:
    """CI-18: refuse a source that is a DataKit store."""
    for project in config.projects:
        if storage.source_is_datakit_store(project.source):
            raise UsageError(FEEDBACK_LOOP.format(source=project.source, repo=project.repo))


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        service.setup_logging(log_level(verbosity=args.verbosity, verbose=args.verbose))
        config = load_config(args.config)
        canaries = [parse_canary(c) for c in args.canary]
        address = service.parse_store_address(
            args.datakit or args.metadata_store or "tcp:localhost:5640"
        )
        host, port = service.parse_listen(args.listen, "--listen")
        prometheus = (
            service.parse_listen(args.listen_prometheus) if args.listen_prometheus else None
        )
        token = read_token(args.token_file)
        if args.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        check_sources(config)
        workdir = Path(args.workdir)
        lock = lock_workdir(workdir)
    except (ConfigError, UsageError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    # A request the server never answers fails after this long (and is
    # retried on a new connection): a stuck server must not stop the CI for
    # good. Watches wait as long as they like.
    store = service.Store(address, options={"timeout": REQUEST_TIMEOUT} if address.server else {})
    try:
        store.connect_now()
    except Exception as exc:  # whatever answered there is not a DataKit store: one line
        print(f"{prog}: {service.describe_connect_error(address, exc)}", file=sys.stderr)
        return 1
    me = owner.Owner.me()
    engine = Engine(
        config,
        store,
        web_ui=args.web_ui or "",
        workdir=workdir,
        canaries=canaries,
        pool_size=args.jobs,
    )

    def reclaim(conn: Connection) -> None:
        # The database lost our claim (an in-memory store restarted): claim
        # it again, or stop if another CI took it meanwhile.
        try:
            owner.claim(conn, me)
        except owner.AlreadyRunning as exc:
            raise service.StartupError(str(exc)) from None

    engine.reclaim = reclaim

    async def run() -> None:
        from datakit.ci.web import serve_web

        try:
            previous = await store.run(partial(owner.claim, me=me, take_over=args.take_over))
        except owner.AlreadyRunning as exc:
            raise service.StartupError(str(exc)) from None
        except DataKitError as exc:  # junk where the claim belongs
            raise service.StartupError(f"{owner.BRANCH}: {exc}") from None
        if previous is not None:
            log.warning("took over from a CI that is gone (pid %d on %s)", *previous.where)
        try:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(partial(serve_web, engine, host, port, token=token))
                if not args.web_ui:
                    engine.web_ui = f"http://{_url_host(bound[0])}:{bound[1]}/"
                if prometheus is not None:
                    await nursery.start(service.serve_prometheus, *prometheus)
                await engine.run()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await store.run(partial(owner.release, me=me))

    try:
        return service.run_service(prog, run)
    finally:
        store.close()
        lock.close()


def lock_workdir(workdir: Path) -> IO[bytes]:
    """Make the workdir and hold its lock for the life of the process: two
    CIs on one workdir would share mirrors and kill each other's jobs
    (leftover jobs are found by the workdir they carry)."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        lock = open(workdir / ".lock", "wb")  # noqa: SIM115 - held until exit
    except OSError as exc:
        raise UsageError(f"--workdir {workdir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise UsageError(f"--workdir {workdir}: another datakit ci uses it") from None
    return lock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return os.uname().nodename
    return f"[{host}]" if ":" in host else host


__all__ = ["build_parser", "main"]
