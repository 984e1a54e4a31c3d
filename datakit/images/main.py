"""`datakit image export | push | follow`: DataKit snapshots as OCI images.

Errors are one line on stderr (`datakit image: ...`) and exit status 1;
usage errors exit 2. The result of each image written is one line on
stdout: `<manifest digest> <how>`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from datakit.client import Commit, Connection, DataKitError, connect
from datakit.images.auth import AuthFileError, find_credentials
from datakit.images.build import (
    DEFAULT_MAX_LAYERS,
    BaseImage,
    Options,
    Outcome,
    build,
    known_commit,
)
from datakit.images.layers import LayerError, normalize_prefix
from datakit.images.layout import LayoutTarget, split_layout
from datakit.images.oci import ImageFormatError, Platform
from datakit.images.progress import Progress
from datakit.images.reference import ImageRef, RefError, parse_ref
from datakit.images.registry import Registry, RegistryError
from datakit.images.target import Target, TargetError

PROG = "datakit image"
log = logging.getLogger("datakit.images")

_ERRORS = (
    AuthFileError,
    DataKitError,
    ImageFormatError,
    LayerError,
    RefError,
    RegistryError,
    TargetError,
    OSError,
)


class UsageError(Exception):
    pass


class DatabaseUnavailable(UsageError):
    """The database did not answer (``follow`` waits for it to come back)."""


class Stop(BaseException):
    """SIGINT or SIGTERM: stop between (or in the middle of) pushes. Not an
    Exception, so that no ``except Exception`` on the way can swallow it."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _platform(text: str) -> Platform:
    try:
        return Platform.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write DataKit snapshots as OCI images: a full layer first, then one "
        "layer per commit holding only what changed (see docs/images.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, *, follow: bool = False) -> None:
        p.add_argument(
            "--db",
            required=True,
            metavar="ADDR",
            help="the database: tcp://HOST[:PORT], unix:///PATH or a Git repository's path",
        )
        if follow:
            p.add_argument("--branch", required=True, help="the branch to follow")
        else:
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--branch", help="image of the branch's head")
            which.add_argument("--commit", help="image of this commit (40 hex)")
        p.add_argument(
            "--prefix",
            default="/",
            metavar="PATH",
            help="where the tree goes in the image's filesystem (default /)",
        )
        p.add_argument(
            "--platform",
            type=_platform,
            default=Platform(),
            metavar="OS/ARCH",
            help="the image's platform when there is no base (default linux/amd64)",
        )
        p.add_argument(
            "--max-layers",
            type=_positive,
            default=DEFAULT_MAX_LAYERS,
            metavar="N",
            help="at most N DataKit layers; beyond, one full layer replaces them "
            f"(default {DEFAULT_MAX_LAYERS})",
        )
        p.add_argument("--full", action="store_true", help="one full layer, whatever the tag holds")
        p.add_argument(
            "--compression",
            choices=["gzip", "none"],
            default="gzip",
            help="layer compression (default gzip; none for debugging)",
        )
        p.add_argument(
            "--mtime",
            choices=["zero", "commit"],
            default="zero",
            help="file times in layers: 0 (default, reproducible) or the commit's time",
        )
        p.add_argument(
            "--opaque-threshold",
            type=_positive,
            metavar="N",
            help="replace N or more whiteouts in a directory emptied of its old entries "
            "by one opaque whiteout",
        )

    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--to", required=True, metavar="HOST[:PORT]/REPO[:TAG]", help="the tag to write"
        )
        p.add_argument("--base", metavar="REF", help="an image of the same registry to build on")
        p.add_argument("--plain-http", action="store_true", help="HTTP instead of HTTPS")
        p.add_argument(
            "--insecure", action="store_true", help="do not verify the registry's certificate"
        )
        p.add_argument(
            "--auth-file",
            metavar="FILE",
            help="credentials (containers auth.json or ~/.docker/config.json format)",
        )
        p.add_argument(
            "--chunk-size",
            type=_positive,
            default=64 * 1024 * 1024,
            metavar="BYTES",
            help="upload blobs larger than this in chunks of this size (default 64 MiB)",
        )

    export = sub.add_parser("export", help="write an image into an OCI image layout")
    common(export)
    export.add_argument(
        "--oci-layout",
        required=True,
        metavar="DIR[:TAG]",
        help="the layout directory (created if missing) and tag (default latest)",
    )
    push = sub.add_parser("push", help="push an image to a registry, incrementally")
    common(push)
    remote(push)
    follow = sub.add_parser("follow", help="push every new head of a branch")
    common(follow, follow=True)
    remote(follow)
    return parser


def open_db(address: str) -> Connection:
    """connect(), but never create a repository where the user named none."""
    options = {}
    if "://" not in address:
        path = Path(address)
        if not path.exists():
            raise UsageError(f"{address}: no such database (not a server address nor a path)")
        if not ((path / ".git").exists() or (path / "HEAD").is_file()):
            raise UsageError(f"{address}: not a Git repository")
        # Each file is read once into a layer: a big cache would only hold
        # the tree's last 64 MiB for nobody (memory flat whatever the tree).
        options["cache_size"] = 4 << 20
    try:
        return connect(address, **options)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except (OSError, DataKitError) as e:
        raise DatabaseUnavailable(f"database {address}: {_one_line(e)}") from None


def resolve(db: Connection, branch: str | None, commit: str | None) -> Commit:
    if commit is not None:
        found = known_commit(db, commit)
        if found is None:
            raise UsageError(f"commit {commit}: not in the database")
        return found
    assert branch is not None
    head = db.branch(branch).head()
    if head is None:
        raise UsageError(f"branch {branch}: no such branch, or it has no commit")
    return head


def options_of(args: argparse.Namespace, base: BaseImage | None = None) -> Options:
    try:
        normalize_prefix(args.prefix)
    except LayerError as e:
        raise UsageError(str(e)) from None
    return Options(
        prefix=args.prefix,
        platform=args.platform,
        max_layers=args.max_layers,
        full=args.full,
        compression=args.compression,
        mtime_from_commit=args.mtime == "commit",
        opaque_threshold=args.opaque_threshold,
        base=base,
    )


@contextlib.contextmanager
def registry_for(
    args: argparse.Namespace, ref: ImageRef, progress: Progress | None
) -> Iterator[Registry]:
    credentials = find_credentials(ref.registry, args.auth_file)
    with Registry(
        ref.registry,
        plain_http=args.plain_http,
        insecure=args.insecure,
        credentials=credentials,
        chunk_size=args.chunk_size,
        progress=progress.add if progress else None,
    ) as registry:
        try:
            yield registry
        finally:
            if progress:
                progress.done()


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def push_once(args: argparse.Namespace, db: Connection, commit: Commit) -> Outcome:
    ref = parse_ref(args.to)
    from datakit.images.remote import RegistryTarget, load_base

    progress = Progress.for_stream(sys.stderr)
    with registry_for(args, ref, progress) as registry:
        base = None
        if args.base:
            base_ref = parse_ref(args.base)
            if base_ref.registry != ref.registry:
                raise UsageError(
                    f"--base {args.base}: must be on the registry it is pushed to ({ref.registry})"
                )
            base = load_base(registry, base_ref, args.platform, same_registry=True)
        target: Target = RegistryTarget(registry, ref, progress)
        return build(db, commit, target, options_of(args, base), warn=_warn)


def cmd_export(args: argparse.Namespace) -> int:
    target = LayoutTarget(*split_layout(args.oci_layout))
    options = options_of(args)
    with open_db(args.db) as db:
        commit = resolve(db, args.branch, args.commit)
        outcome = build(db, commit, target, options, warn=_warn)
    print(outcome, flush=True)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    parse_ref(args.to)
    options_of(args)  # usage errors before connecting
    with open_db(args.db) as db:
        commit = resolve(db, args.branch, args.commit)
        print(push_once(args, db, commit), flush=True)
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    from datakit.images.follow import follow

    parse_ref(args.to)
    options_of(args)
    return follow(args, lambda db, commit: push_once(args, db, commit))


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("DATAKIT_LOG", "WARNING").upper(),
        format=f"{PROG}: %(message)s",
    )
    commands = {"export": cmd_export, "push": cmd_push, "follow": cmd_follow}
    try:
        with stop_on_signals():
            return commands[args.command](args)
    except Stop:
        return 0 if args.command == "follow" else 130
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except _ERRORS as e:
        print(f"{PROG}: {_one_line(e)}", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}"
    text = str(e) or type(e).__name__
    return " ".join(text.split())
