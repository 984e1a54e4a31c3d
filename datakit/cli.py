"""The `datakit` command: `datakit serve`, `mount`, `bridge`, `ci` and `image`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from datakit import __version__
from datakit.options import LEVELS, UsageError, log_level, seconds

if TYPE_CHECKING:  # imported when serving only: `datakit --version` stays quick
    from datakit.serve import ServeConfig
    from datakit.server.endpoints import Endpoint
    from datakit.store import RemotePolicy

log = logging.getLogger("datakit")


def _msize(text: str) -> int:
    value = _bytes(text)
    if not 4096 <= value <= 16 * 1024 * 1024:
        raise argparse.ArgumentTypeError("must be between 4096 and 16777216 bytes")
    return value


def _add_remote_flags(serve: argparse.ArgumentParser) -> None:
    remotes = serve.add_argument_group("remotes (remotes/<name>/fetch)")
    remotes.add_argument(
        "--remote-schemes",
        metavar="LIST",
        default="git,http,https",
        help="comma-separated URL schemes clients may fetch from: git, http, https, ssh "
        "(uses the server's ssh identity), file (local paths and file://: any repository "
        "the server can read); empty for none (default: %(default)s)",
    )
    remotes.add_argument(
        "--remote-connect-timeout",
        type=seconds(),
        default=10.0,
        metavar="SECONDS",
        help="give up a fetch whose remote does not answer in time (default: %(default)s)",
    )
    remotes.add_argument(
        "--remote-timeout",
        type=seconds(),
        default=60.0,
        metavar="SECONDS",
        help="give up a fetch whose remote sends nothing for this long (default: %(default)s)",
    )
    remotes.add_argument(
        "--remote-max-time",
        type=seconds(),
        default=3600.0,
        metavar="SECONDS",
        help="give up a fetch that takes longer than this in all, even if the remote "
        "keeps sending (default: %(default)s)",
    )
    remotes.add_argument(
        "--remote-max-pack",
        type=_bytes,
        default=4 << 30,
        metavar="BYTES",
        help="largest pack a fetch, a replica's fetch or a `git push` (--git-push) may "
        "bring; it is streamed to a temporary file, never held in memory (default 4G)",
    )


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(text: str) -> int:
    """A byte count: 1048576, 64k, 64M, 4G (binary units)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    try:
        value = int(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return value


def _decimal(text: str) -> bool:
    # Not str.isdigit() alone: it also accepts digits int() refuses ("\u00b2").
    return text.isascii() and text.isdigit()


def _positive(text: str) -> int:
    if not _decimal(text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not _decimal(text) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {text!r}")
    return int(text)


def _add_git_flags(serve: argparse.ArgumentParser) -> None:
    git = serve.add_argument_group("more than one machine (see docs/operations.md)")
    git.add_argument(
        "--listen-git",
        metavar="URLS",
        help="serve the database to git (clone, fetch, ls-remote) at these comma-separated "
        "endpoints: tcp://HOST[:PORT] (default port 9418)",
    )
    git.add_argument(
        "--git-push",
        nargs="?",
        const="ff",
        choices=["ff", "force"],
        help="accept `git push` at --listen-git: fast-forwards and new branches (ff, the "
        "default), or also forced pushes and branch deletions (force)",
    )
    git.add_argument(
        "--git-timeout",
        type=seconds(),
        default=60.0,
        metavar="SECONDS",
        help="disconnect a git client silent this long in the middle of a request "
        "(default: %(default)s)",
    )
    git.add_argument(
        "--max-git-connections",
        type=_positive,
        default=16,
        metavar="N",
        help="serve at most N git connections at once; more are closed at once "
        "(default: %(default)s)",
    )
    git.add_argument(
        "--mirror",
        metavar="URL",
        help="serve a read-only replica that follows the branches of the database at URL "
        "(a primary's --listen-git, or any remote --remote-schemes allows)",
    )
    git.add_argument(
        "--mirror-interval",
        type=seconds(60),
        default=0.25,
        metavar="SECONDS",
        help="how often a replica asks its primary for its branches (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datakit",
        description="A Git-like versioned tree database served as a 9p filesystem.",
    )
    parser.add_argument("--version", action="version", version=f"datakit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the 9p server",
        description="Serve a DataKit database over 9p (9P2000, 9P2000.u, 9P2000.L).",
    )
    store = serve.add_argument_group("store")
    store.add_argument(
        "--git",
        metavar="PATH",
        help="serve the Git repository at PATH (bare, with a work tree, or created bare "
        "if missing); without it the store is in memory and lost on exit",
    )
    store.add_argument(
        "--auto-push",
        metavar="URL",
        help="push every branch update to this Git remote (needs --git)",
    )
    store.add_argument(
        "--auto-push-timeout",
        type=seconds(),
        default=300.0,
        metavar="SECONDS",
        help="stop an auto-push that has not finished in this time, and retry it later "
        "(default: %(default)s)",
    )
    _add_remote_flags(serve)
    _add_git_flags(serve)
    memory = serve.add_argument_group("memory (sizes in bytes, or with a K, M, G suffix)")
    memory.add_argument(
        "--cache-size",
        type=_bytes,
        metavar="BYTES",
        help="byte budget of the blob cache every open file reads through; bigger "
        "blobs are streamed from a temporary file (default 64M)",
    )
    memory.add_argument(
        "--max-file-size",
        type=_bytes,
        metavar="BYTES",
        help="largest file a transaction may hold; writes and truncates past it "
        "fail with EFBIG (default 4G)",
    )
    memory.add_argument(
        "--spill-threshold",
        type=_bytes,
        metavar="BYTES",
        help="a file being written in a transaction moves from memory to a "
        "temporary file past this size (default 8M)",
    )
    listen = serve.add_argument_group("listening")
    listen.add_argument(
        "--listen-9p",
        "--url",
        dest="listen_9p",
        metavar="URLS",
        default="tcp://127.0.0.1:5640",
        help="comma-separated endpoints: tcp://HOST[:PORT] (default port 5640), "
        "unix:///PATH (also file:///PATH), fd://N  (default: %(default)s)",
    )
    listen.add_argument(
        "--listen-prometheus",
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (HOST defaults to 0.0.0.0)",
    )
    listen.add_argument(
        "--max-msize",
        type=_msize,
        default=1024 * 1024,
        metavar="BYTES",
        help="largest 9p message size offered to clients (default: %(default)s)",
    )
    listen.add_argument(
        "--max-connections",
        type=_positive,
        metavar="N",
        help="serve at most N 9p connections at once; more are closed at once "
        "(default: half the file descriptors left after 64 kept for the store)",
    )
    listen.add_argument(
        "--read-only",
        action="store_true",
        help="refuse every change (writes, creates, removes, renames)",
    )
    listen.add_argument(
        "--example-tree",
        action="store_true",
        help="serve a scratch writable in-memory tree instead of the database "
        "(for testing 9p clients)",
    )
    logs = serve.add_argument_group("logging")
    logs.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    logs.add_argument("-q", "--quiet", action="store_true", help="no logging")
    logs.add_argument(
        "--verbosity",
        choices=list(LEVELS),
        help="log level; overrides -v (default: $DATAKIT_VERBOSE or warning)",
    )

    mount = sub.add_parser(
        "mount",
        help="mount a DataKit server with the Linux 9p client",
        description="Run `mount -t 9p` with the options DataKit needs.",
    )
    mount.add_argument(
        "host", nargs="?", default="127.0.0.1", help="server address (default 127.0.0.1)"
    )
    mount.add_argument("mountpoint", nargs="?", default="/db", help="where to mount (default /db)")
    mount.add_argument("-p", "--port", type=_port, default=5640, help="server port (default 5640)")
    mount.add_argument(
        "--version-9p",
        dest="protocol",
        default="9p2000.L",
        choices=["9p2000.L", "9p2000.u", "9p2000"],
        help="protocol dialect (default 9p2000.L; 9p2000 has no symlinks)",
    )
    mount.add_argument(
        "--msize",
        type=_msize,
        default=256 * 1024,
        help="message size to ask for (default %(default)s: kernels before 6.2 allocate a "
        "whole msize buffer for every request, so bigger is slower for small files)",
    )
    mount.add_argument("-o", "--options", default="", help="extra mount options, comma-separated")
    mount.add_argument(
        "-n", "--dry-run", action="store_true", help="print the mount command without running it"
    )
    # Listed for --help only: main() hands `datakit bridge ...` to the bridges'
    # own parser (datakit.bridges.commands), which loads each bridge lazily.
    sub.add_parser(
        "bridge",
        help="run a bridge: `datakit bridge local ...` or `datakit bridge github ...`",
        add_help=False,
    )
    # `datakit image ...` (datakit.images.main), likewise handed over whole.
    sub.add_parser(
        "image",
        help="write snapshots as OCI images: `datakit image push --db ADDR --branch B --to REF` "
        "(see docs/images.md)",
        add_help=False,
    )
    # Likewise `datakit ci ...` (datakit.ci.main), which needs the web stack.
    sub.add_parser(
        "ci",
        help="run DataKitCI: `datakit ci --config ci.toml` (see docs/ci.md)",
        add_help=False,
    )
    return parser


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The parsed `serve` arguments as a validated :class:`ServeConfig`
    (UsageError for what argparse's per-option types cannot see)."""
    from datakit.serve import ServeConfig
    from datakit.server import EndpointError, parse_endpoints

    try:
        endpoints = parse_endpoints(args.listen_9p)
    except EndpointError as exc:
        raise UsageError(str(exc)) from None
    if not endpoints:
        raise UsageError("--listen-9p: no endpoint given")
    if args.auto_push and not args.git:
        raise UsageError("--auto-push needs --git (in-memory stores cannot be pushed)")
    git_endpoints = _git_endpoints(args.listen_git) if args.listen_git else []
    if args.git_push and not git_endpoints:
        raise UsageError("--git-push needs --listen-git")
    if args.git_push and args.read_only:
        raise UsageError("--git-push: a --read-only server takes no writes")
    if args.mirror is not None:
        if not args.mirror.strip():
            raise UsageError("--mirror: no URL given")
        if args.git_push:
            raise UsageError("--git-push: a replica (--mirror) takes no writes")
        if args.example_tree:
            raise UsageError("--mirror cannot serve --example-tree")
    return ServeConfig(
        endpoints=endpoints,
        git=args.git,
        auto_push=args.auto_push,
        auto_push_timeout=args.auto_push_timeout,
        prometheus=_host_port(args.listen_prometheus) if args.listen_prometheus else None,
        max_msize=args.max_msize,
        read_only=args.read_only,
        example_tree=args.example_tree,
        remotes=_remote_policy(args),
        cache_size=args.cache_size,
        max_file_size=args.max_file_size,
        spill_threshold=args.spill_threshold,
        max_connections=args.max_connections,
        git_endpoints=git_endpoints,
        git_push=args.git_push,
        git_timeout=args.git_timeout,
        max_git_connections=args.max_git_connections,
        mirror=args.mirror.strip() if args.mirror else None,
        mirror_interval=args.mirror_interval,
    )


def _git_endpoints(text: str) -> list[Endpoint]:
    from datakit.gitserver import DEFAULT_PORT
    from datakit.server import EndpointError
    from datakit.server.endpoints import parse_endpoint

    try:
        endpoints = [
            parse_endpoint(part.strip(), DEFAULT_PORT) for part in text.split(",") if part.strip()
        ]
    except EndpointError as exc:
        raise UsageError(f"--listen-git: {exc}") from None
    if not endpoints:
        raise UsageError("--listen-git: no endpoint given")
    if any(e.scheme != "tcp" for e in endpoints):
        # git:// is TCP: git has no way to reach a Unix socket by URL.
        raise UsageError("--listen-git: use tcp://HOST[:PORT] (git:// is TCP only)")
    return endpoints


def _remote_policy(args: argparse.Namespace) -> RemotePolicy:
    from datakit.store import Limits, RemotePolicy, parse_schemes

    try:
        schemes = parse_schemes(args.remote_schemes)
    except ValueError as exc:
        raise UsageError(f"--remote-schemes: {exc}") from None
    return RemotePolicy(
        schemes=schemes,
        connect_timeout=args.remote_connect_timeout,
        inactivity_timeout=args.remote_timeout,
        max_time=args.remote_max_time,
        max_pack=args.remote_max_pack,
        # A fetched object is held whole to be checked: no bigger than a file.
        max_object=Limits().max_file_size if args.max_file_size is None else args.max_file_size,
    )


def _host_port(text: str) -> tuple[str, int]:
    """``--listen-prometheus``: PORT, HOST:PORT or [IPV6]:PORT; HOST defaults to 0.0.0.0."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = "0.0.0.0"
    host = host.strip("[]") or "0.0.0.0"
    if not _decimal(port) or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen-prometheus {text!r}: use PORT or HOST:PORT")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bridge"]:
        from datakit.bridges.commands import bridge_main

        return bridge_main(argv[1:])
    if argv[:1] == ["ci"]:
        from datakit.ci.main import main as ci_main

        return ci_main(argv[1:])
    if argv[:1] == ["image"]:
        from datakit.images.main import main as image_main

        return image_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from datakit.serve import run

            level = log_level(quiet=args.quiet, verbosity=args.verbosity, verbose=args.verbose)
            logging.basicConfig(
                level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
            config = serve_config(args)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            return run(config)
        if args.command == "mount":
            from datakit.mount import mount

            return mount(args)
    except UsageError as exc:
        print(f"datakit: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
