"""`datakit bridge github` (also `datakit-bridge-github`): flags and their checks.

The flags are upstream's (`bridge/github/main.ml`), so its compose files run
unchanged (spec/bridges.md §3.1), plus ours: `--github-url`, `--token-file`,
`--webhook-listen`, `--webhook-secret-file`, `--poll-interval`. Everything
is checked here, before anything starts: bad input gives one line on stderr
and a non-zero exit, never a traceback from deep inside the service.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from datakit.options import LEVELS, UsageError, log_level, seconds

if TYPE_CHECKING:  # the service (trio, githubkit) loads only once the flags are good
    from datakit.bridges.github.main import Config
    from datakit.github.model import Repo

log = logging.getLogger("datakit.bridges.github")

PROG = "datakit-bridge-github"

DESTINATIONS = ("quiet", "timestamp", "eventlog", "asl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of §3.1, on `parser` (a subcommand's or the console script's)."""
    db = parser.add_argument_group("database")
    db.add_argument(
        "-d",
        "--datakit",
        metavar="ENDPOINT",
        default="tcp://127.0.0.1:5640",
        help="the DataKit database: tcp://HOST[:PORT], tcp:HOST:PORT, unix:///PATH or "
        "file:///PATH (a Unix socket), or git:///PATH (a Git repository, no server) "
        "(default: %(default)s)",
    )
    db.add_argument(
        "-b",
        "--branch",
        metavar="NAME",
        default="github-metadata",
        help="the metadata branch (default: %(default)s)",
    )
    db.add_argument(
        "--no-datakit",
        action="store_true",
        help="do not connect to a database (only serve metrics)",
    )

    gh = parser.add_argument_group("GitHub")
    gh.add_argument(
        "-r",
        "--repositories",
        metavar="LIST",
        action="append",
        default=[],
        help="comma-separated user/repo to start monitoring (writes their .monitor files)",
    )
    gh.add_argument(
        "-c",
        "--capabilities",
        metavar="CAPS",
        default="*:rw",
        help="what the bridge may do on GitHub, e.g. '*:r,status[ci/datakit]:x,webhook:rw' "
        "(default: %(default)s)",
    )
    gh.add_argument(
        "--github-url",
        metavar="URL",
        default="https://api.github.com/",
        help="the GitHub API (default: %(default)s)",
    )
    gh.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the GitHub token, not readable by group or others "
        "(default: $GITHUB_TOKEN, else upstream's datakit-github-cookie jar entry)",
    )
    gh.add_argument(
        "--resync-interval",
        metavar="SECONDS",
        type=seconds(30 * 86400),
        default=3600.0,
        help="re-import every monitored repository at this period (default: %(default)s)",
    )
    gh.add_argument("--no-resync", action="store_true", help="no periodic re-import")
    gh.add_argument(
        "--poll-interval",
        metavar="SECONDS",
        type=seconds(30 * 86400),
        help="poll every monitored repository at this period with conditional requests "
        "(default: no polling)",
    )

    hooks = parser.add_argument_group("webhooks")
    hooks.add_argument(
        "--webhook",
        metavar="URL",
        help="public URL GitHub POSTs events to; the bridge listens on its port and path",
    )
    hooks.add_argument(
        "--webhook-listen",
        metavar="ADDR:PORT",
        help="where to listen for webhooks, when not the --webhook URL's port on all addresses",
    )
    hooks.add_argument(
        "--webhook-secret-file",
        metavar="PATH",
        help="the hooks' secret, kept across restarts (created with mode 0600 when missing; "
        "default: a new secret each run)",
    )

    ops = parser.add_argument_group("operations")
    ops.add_argument(
        "--listen-prometheus",
        metavar="[ADDR:]PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics",
    )
    ops.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    ops.add_argument("-q", "--quiet", action="store_true", help="no logging")
    ops.add_argument(
        "--verbosity",
        choices=list(LEVELS),
        help="log level; overrides -v (default: $DATAKIT_VERBOSE or warning)",
    )
    ops.add_argument(
        "--log-destination",
        choices=DESTINATIONS,
        default="timestamp",
        help="quiet: no log; timestamp: stderr with times; eventlog, asl: stderr "
        "(accepted for upstream's compose files) (default: %(default)s)",
    )
    ops.add_argument(
        "--log-clock",
        choices=("monotonic", "posix"),
        default="posix",
        help="times in the log: seconds since start or wall clock (default: %(default)s)",
    )
    ops.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="accepted for compatibility; the log is plain text",
    )


def _port(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise UsageError(f"{what}: not a port number (0-65535): {text!r}")
    return int(text)


def _host_port(text: str, what: str, default_host: str) -> tuple[str, int]:
    """`PORT`, `:PORT`, `HOST:PORT` or `[V6]:PORT`."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return default_host, _port(text, what)
    host = host.removeprefix("[").removesuffix("]") or default_host
    return host, _port(port, what)


def parse_repositories(values: Sequence[str]) -> tuple[Repo, ...]:
    """``-r`` lists (the flag may repeat): ``user/repo``, comma-separated."""
    from datakit.github.model import Repo

    repos: list[Repo] = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            try:
                repo = Repo.parse(item)
            except ValueError as e:
                raise UsageError(f"-r {value}: {e}") from None
            if repo not in repos:
                repos.append(repo)
    return tuple(repos)


def _upstream_jar() -> str | None:
    """Upstream's cookie jar entry `datakit-github-cookie`, skipped when not private."""
    home = os.environ.get("HOME")
    places = [Path("/run/secrets/datakit-github-cookie")]
    if home:
        places.insert(0, Path(home) / ".github" / "jar" / "datakit-github-cookie")
    for place in places:
        try:
            if place.stat().st_mode & 0o007:
                log.warning("%s is readable by others: ignored", place)
                continue
            text = place.read_text().strip()
        except (OSError, UnicodeDecodeError):
            continue
        # upstream's jar entries are `user:token`; a bare token works too.
        token = text.rpartition(":")[2].strip() if ":" in text else text
        if token:
            return token
    return None


def _token(args: argparse.Namespace) -> str | None:
    """``--token-file``, else ``GITHUB_TOKEN``, else upstream's jar, else none."""
    from datakit.bridges.github.secretfiles import SecretFileError, load_token

    try:
        token = load_token(Path(args.token_file) if args.token_file else None)
    except SecretFileError as e:
        raise UsageError(str(e)) from None
    return token or _upstream_jar()


def _secret(args: argparse.Namespace) -> bytes | None:
    """The hooks' secret: kept in ``--webhook-secret-file`` (created when
    missing), else upstream's random per-process ``datakit:`` secret."""
    if not args.webhook:
        return None
    if not args.webhook_secret_file:
        return ("datakit:" + secrets.token_hex(20)).encode()
    from datakit.bridges.github.secretfiles import SecretFileError, load_or_create_secret

    try:
        return load_or_create_secret(Path(args.webhook_secret_file))
    except SecretFileError as e:
        raise UsageError(str(e)) from None


def _log_level(args: argparse.Namespace) -> int:
    if args.log_destination == "quiet":
        return LEVELS["quiet"]
    return log_level(quiet=args.quiet, verbosity=args.verbosity, verbose=args.verbose)


def config_of(args: argparse.Namespace) -> Config:
    """Every flag checked and turned into the service's settings."""
    from datakit.bridges import service
    from datakit.bridges.github.main import Config
    from datakit.github.capabilities import Capabilities

    try:
        capabilities = Capabilities.parse(args.capabilities)
    except ValueError as e:
        raise UsageError(f"-c {args.capabilities}: {e}") from None
    repos = parse_repositories(args.repositories)
    try:
        endpoint = service.parse_store_address(args.datakit)
    except ValueError as e:
        raise UsageError(f"-d {e}") from None
    if args.branch:
        from datakit.client.api import check_branch_name

        try:
            check_branch_name(args.branch)
        except ValueError as e:
            raise UsageError(f"-b {args.branch}: {e}") from None
    github_url = args.github_url
    parts = urlsplit(github_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--github-url {github_url}: not an http:// or https:// URL")
    webhook = webhook_path = None
    webhook_listen: tuple[str, int] | None = None
    if args.webhook_listen and not args.webhook:
        raise UsageError("--webhook-listen needs --webhook (the URL GitHub is given)")
    if args.webhook:
        from datakit.bridges.github.webhooks import listen_address

        try:
            where = listen_address(args.webhook, args.webhook_listen)
        except ValueError as e:
            raise UsageError(str(e)) from None
        webhook, webhook_path = args.webhook, where.path
        webhook_listen = (where.host, where.port)
    if args.webhook_secret_file and not args.webhook:
        raise UsageError("--webhook-secret-file needs --webhook")
    prometheus = None
    if args.listen_prometheus:
        prometheus = _host_port(args.listen_prometheus, "--listen-prometheus", "0.0.0.0")
    return Config(
        endpoint=None if args.no_datakit else endpoint,
        branch=args.branch,
        repositories=repos,
        capabilities=capabilities,
        github_url=github_url,
        token=_token(args),
        webhook=webhook,
        webhook_path=webhook_path,
        webhook_listen=webhook_listen,
        webhook_secret=_secret(args),
        resync_interval=None if args.no_resync else args.resync_interval,
        poll_interval=args.poll_interval,
        prometheus=prometheus,
    )


def setup_logging(args: argparse.Namespace) -> None:
    level = _log_level(args)
    handler = logging.StreamHandler(sys.stderr)
    if args.log_destination == "timestamp":
        if args.log_clock == "monotonic":
            start = time.monotonic()

            class Monotonic(logging.Formatter):
                def format(self, record: logging.LogRecord) -> str:
                    return f"{time.monotonic() - start:10.3f} {super().format(record)}"

            handler.setFormatter(Monotonic("%(levelname)s %(name)s: %(message)s"))
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at info: keep that for debug.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


def main(args: argparse.Namespace) -> int:
    """Run the bridge until SIGTERM/SIGINT: 0 on a clean stop, 1 on bad
    flags or a database that is not there at start."""
    prog = getattr(args, "prog", PROG)
    try:
        setup_logging(args)
        config = config_of(args)
    except UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    from datakit.bridges.github.main import run_service

    return run_service(config, prog)
