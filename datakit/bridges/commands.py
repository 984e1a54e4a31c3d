"""Command lines of the bridges: ``datakit bridge local|github …`` and the
upstream-named scripts ``datakit-bridge-local-git`` and
``datakit-bridge-github``.

Argument errors exit with status 1, as upstream's programs (cmdliner) do.
The GitHub bridge's module is imported only when it is asked for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

GITHUB_CLI = "datakit.bridges.github.cli"


class Parser(argparse.ArgumentParser):
    """argparse, with upstream's exit status 1 for bad arguments."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _github_module() -> ModuleType | None:
    import importlib

    try:
        return importlib.import_module(GITHUB_CLI)
    except ModuleNotFoundError as exc:
        if exc.name and GITHUB_CLI.startswith(exc.name):
            return None
        raise


def _not_available(prog: str) -> int:
    print(
        f"{prog}: the GitHub bridge is not available in this build ({GITHUB_CLI} is missing)",
        file=sys.stderr,
    )
    return 1


LOCAL_DESCRIPTION = (
    "Publish the branches of local Git repositories in the github-metadata branch of a "
    "DataKit store, as the GitHub bridge does for GitHub: a stand-in to try a CI without "
    "GitHub. The repositories are only read."
)
GITHUB_DESCRIPTION = (
    "Mirror GitHub pull requests, refs and statuses into the github-metadata branch, and "
    "send statuses and PR edits made there back to GitHub."
)


def build_parser(prog: str = "datakit bridge", argv: Sequence[str] = ()) -> Parser:
    from datakit.bridges import local

    parser = Parser(prog=prog, description="Run a bridge between a forge and DataKit.")
    sub = parser.add_subparsers(dest="bridge", metavar="BRIDGE", required=True)
    local_parser = sub.add_parser(
        "local", help="publish local Git repositories' branches", description=LOCAL_DESCRIPTION
    )
    local.add_arguments(local_parser)
    local_parser.set_defaults(prog=f"{prog} local")
    github_parser = sub.add_parser(
        "github",
        help="mirror GitHub into github-metadata and back",
        description=GITHUB_DESCRIPTION,
    )
    github_parser.set_defaults(prog=f"{prog} github")
    if list(argv[:1]) == ["github"]:  # its module is loaded only when asked for
        module = _github_module()
        if module is not None:
            module.add_arguments(github_parser)
    return parser


def bridge_main(argv: Sequence[str], prog: str = "datakit bridge") -> int:
    """``datakit bridge ARGS``."""
    if list(argv[:1]) == ["github"] and _github_module() is None:
        return _not_available(f"{prog} github")
    args = build_parser(prog, argv).parse_args(list(argv))
    if args.bridge == "local":
        from datakit.bridges import local

        return local.main(args)
    module = _github_module()
    if module is None:
        return _not_available(args.prog)
    return int(module.main(args))


def local_main(argv: Sequence[str] | None = None) -> int:
    """The ``datakit-bridge-local-git`` script."""
    from datakit.bridges import local

    parser = Parser(prog=local.PROG, description=LOCAL_DESCRIPTION)
    local.add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    args.prog = local.PROG
    return local.main(args)


def github_main(argv: Sequence[str] | None = None) -> int:
    """The ``datakit-bridge-github`` script."""
    prog = "datakit-bridge-github"
    module = _github_module()
    if module is None:
        return _not_available(prog)
    parser = Parser(prog=prog, description=GITHUB_DESCRIPTION)
    module.add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    args.prog = prog
    return int(module.main(args))
