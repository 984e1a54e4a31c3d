"""BR-25 (local part): the flags of upstream's self-CI compose file parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.bridges import local
from datakit.bridges.commands import Parser, build_parser
from datakit.bridges.service import parse_store_address
from datakit.github.model import Repo

COMPOSE = ["--metadata-store", "tcp:datakit:5640", "-v", "moby/datakit:/data/repos/datakit"]


def test_br_25_local_compose_flags() -> None:
    parser = Parser(prog=local.PROG)
    local.add_arguments(parser)
    args = parser.parse_args(COMPOSE)
    assert args.verbose == 1
    assert parse_store_address(args.metadata_store).target == "tcp://datakit:5640"
    assert [local.parse_repo_arg(r) for r in args.repositories] == [
        (Repo("moby", "datakit"), "/data/repos/datakit")
    ]
    # Through `datakit bridge local` too; the logging flags of upstream.
    args = build_parser().parse_args(["local", *COMPOSE, "--color", "always"])
    assert args.bridge == "local" and args.color == "always"
    args = build_parser().parse_args(["local", "--verbosity", "debug", "a/b:/x"])
    assert args.verbosity == "debug"


def test_br_25_only_the_path_is_missing_here() -> None:
    """Everything but the repository path checks out (it exists only in the
    container): the error names that path."""
    parser = Parser(prog=local.PROG)
    local.add_arguments(parser)
    with pytest.raises(local.NotARepository, match="/data/repos/datakit"):
        local.prepare(parser.parse_args(COMPOSE))


def test_br_25_default_store(tmp_path: Path) -> None:
    parser = Parser(prog=local.PROG)
    local.add_arguments(parser)
    args = parser.parse_args([f"me/p:{tmp_path}"])
    assert parse_store_address(args.metadata_store).target == "tcp://localhost:5640"
