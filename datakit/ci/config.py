"""The CI's TOML configuration (spec ci.md B.2), checked strictly up front.

A typo in a CI configuration otherwise shows up hours later as a job that
never ran, so every problem is refused at start with one line naming the
file, the table and the key: ``ci.toml: [[project]] #1 (me/p)
[[project.job]] #2 "test": unknown key "rn"``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import re
import tomllib
from collections.abc import Callable
from typing import Any

from datakit.ci.model import CIConfig, JobSpec, ProjectSpec, TargetId
from datakit.github.model import PRId, RefId, Repo

# Job names become status contexts ci/datakit/<name>, path components and
# (escaped) parts of result branch names; 60 characters keep the longest
# escaped result branch name within the store's 250.
_JOB_NAME = re.compile(r"[A-Za-z0-9._-]+")
JOB_NAME_MAX = 60
# A context component named like a status file would collide with the files
# of context ci/datakit (datakit.github.tree refuses to write it).
_RESERVED_JOB_NAMES = frozenset({"state", "description", "target_url"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PROJECT_KEYS = ("repo", "source", "dashboards", "targets", "job")
_JOB_KEYS = ("name", "run", "timeout", "image", "network", "needs", "env")
DEFAULT_TIMEOUT = 3600.0


class ConfigError(ValueError):
    """A configuration problem; ``str(e)`` is one line naming file, table and key."""


class _Where:
    """The location part of a message, built up as the parser descends."""

    def __init__(self, path: str, table: str = "") -> None:
        self.path = path
        self.table = table

    def at(self, table: str) -> _Where:
        return _Where(self.path, f"{self.table} {table}".strip())

    def fail(self, problem: str) -> ConfigError:
        where = f"{self.path}: {self.table}" if self.table else f"{self.path}: top level"
        return ConfigError(f"{where}: {problem}")


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: _Where) -> None:
    for key in table:
        if key not in allowed:
            raise where.fail(f'unknown key "{key}" (known: {", ".join(allowed)})')


def _string(value: object, key: str, where: _Where) -> str:
    if not isinstance(value, str):
        raise where.fail(f'key "{key}": expected a string, got {_kind(value)}')
    if not value.strip() or "\0" in value:
        raise where.fail(f'key "{key}": must be a non-empty string without NUL')
    return value


def _strings(value: object, key: str, where: _Where) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise where.fail(f'key "{key}": expected an array of strings, got {_kind(value)}')
    return tuple(_string(v, key, where) for v in value)


def _required(table: dict[str, Any], key: str, where: _Where) -> Any:
    if key not in table:
        raise where.fail(f'missing key "{key}"')
    return table[key]


def parse_config(text: str, path: str = "<string>") -> CIConfig:
    """Parse and check a configuration (ConfigError on any problem)."""
    where = _Where(str(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise where.fail(f"not valid TOML: {exc}") from None
    _check_keys(data, ("project",), where)
    projects = data.get("project")
    if projects is None or projects == []:
        raise where.fail('no [[project]] table (at least one is needed, with "repo" and "source")')
    if not isinstance(projects, list) or not all(isinstance(p, dict) for p in projects):
        raise where.fail('key "project": must be an array of tables ([[project]])')
    specs: list[ProjectSpec] = []
    seen: dict[Repo, int] = {}
    for i, table in enumerate(projects, 1):
        spec = _project(table, where.at(f"[[project]] #{i}"))
        if spec.repo in seen:
            first = seen[spec.repo]
            raise where.at(f"[[project]] #{i} ({spec.repo})").fail(
                f'key "repo": duplicate repository {spec.repo} (also [[project]] #{first})'
            )
        seen[spec.repo] = i
        specs.append(spec)
    return CIConfig(path=str(path), projects=tuple(specs))


def load_config(path: str | os.PathLike[str]) -> CIConfig:
    """Read and parse a configuration file (ConfigError also when
    unreadable); relative ``source`` paths are resolved (:func:`resolve_source`)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 (byte {exc.start})") from None
    config = parse_config(text, name)
    base = os.path.dirname(os.path.abspath(name))
    projects = tuple(
        dataclasses.replace(p, source=resolve_source(p.source, base)) for p in config.projects
    )
    return dataclasses.replace(config, projects=projects)


def resolve_source(source: str, base: str) -> str:
    """A relative local path is relative to the configuration file's
    directory (as in compose files), made absolute so that git runs from
    any directory (the mirror's) find it; URLs and ``host:path`` stay."""
    if "://" in source or os.path.isabs(source) or os.path.expanduser(source) != source:
        return os.path.expanduser(source)
    head = source.split("/", 1)[0]
    if ":" in head:  # scp-like user@host:path
        return source
    return os.path.normpath(os.path.join(base, source))


def _project(table: dict[str, Any], where: _Where) -> ProjectSpec:
    text = _string(_required(table, "repo", where), "repo", where)
    try:
        repo = Repo.parse(text)
    except ValueError as exc:
        raise where.fail(f'key "repo": {exc}') from None
    where = _Where(where.path, f"{where.table} ({repo})")
    _check_keys(table, _PROJECT_KEYS, where)
    source = _string(_required(table, "source", where), "source", where)
    dashboards = _strings(table.get("dashboards", ["master"]), "dashboards", where)
    targets = _strings(table.get("targets", ["heads/*", "prs"]), "targets", where)
    jobs_raw = _required(table, "job", where)
    if not isinstance(jobs_raw, list) or not all(isinstance(j, dict) for j in jobs_raw):
        raise where.fail('key "job": must be an array of tables ([[project.job]])')
    if not jobs_raw:
        raise where.fail('key "job": no [[project.job]] (a project needs at least one job)')
    jobs: list[JobSpec] = []
    names: dict[str, int] = {}
    for k, job_table in enumerate(jobs_raw, 1):
        job = _job(job_table, where, k)
        if job.name in names:
            raise where.at(f'[[project.job]] #{k} "{job.name}"').fail(
                f'key "name": duplicate job name "{job.name}" (also [[project.job]] '
                f"#{names[job.name]})"
            )
        names[job.name] = k
        jobs.append(job)
    _check_needs(jobs, lambda j: where.at(f'[[project.job]] #{names[j.name]} "{j.name}"'))
    return ProjectSpec(
        repo=repo, source=source, jobs=tuple(jobs), dashboards=dashboards, targets=targets
    )


def _job(table: dict[str, Any], project: _Where, k: int) -> JobSpec:
    where = project.at(f"[[project.job]] #{k}")
    name = _string(_required(table, "name", where), "name", where)
    if (
        not _JOB_NAME.fullmatch(name)
        or name.startswith(".")
        or name in _RESERVED_JOB_NAMES
        or len(name) > JOB_NAME_MAX
    ):
        raise where.fail(
            f'key "name": {name!r} is not a job name (letters, digits, ".", "_", "-"; not '
            f"starting with '.'; at most {JOB_NAME_MAX} characters; not "
            f"{', '.join(sorted(_RESERVED_JOB_NAMES))})"
        )
    where = project.at(f'[[project.job]] #{k} "{name}"')
    _check_keys(table, _JOB_KEYS, where)
    raw_run = _required(table, "run", where)
    run: tuple[str, ...] | str
    if isinstance(raw_run, str):
        run = _string(raw_run, "run", where)
    else:
        run = _strings(raw_run, "run", where)
        if not run:
            raise where.fail('key "run": must not be an empty array')
    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise where.fail(f'key "timeout": expected a positive number of seconds, got {timeout!r}')
    image = _string(table["image"], "image", where) if "image" in table else None
    network = _string(table["network"], "network", where) if "network" in table else None
    if network is not None and image is None:
        raise where.fail('key "network": only allowed together with "image"')
    needs = _strings(table.get("needs", []), "needs", where)
    env_raw = table.get("env", {})
    if not isinstance(env_raw, dict):
        raise where.fail(f'key "env": expected a table of strings, got {_kind(env_raw)}')
    env: list[tuple[str, str]] = []
    for key, value in env_raw.items():
        if not _ENV_NAME.fullmatch(key):
            raise where.fail(f'key "env": {key!r} is not an environment variable name')
        if not isinstance(value, str) or "\0" in value:
            raise where.fail(f'key "env": {key} must be a string without NUL, got {_kind(value)}')
        env.append((key, value))
    return JobSpec(
        name=name,
        run=run,
        timeout=float(timeout),
        image=image,
        network=network,
        needs=needs,
        env=tuple(env),
    )


def _check_needs(jobs: list[JobSpec], where_of: Callable[[JobSpec], _Where]) -> None:
    """Unknown names and cycles in ``needs`` (a cycle would never start)."""
    by_name = {j.name: j for j in jobs}
    for job in jobs:
        for need in job.needs:
            if need not in by_name:
                raise where_of(job).fail(f'key "needs": no job named "{need}" in this project')
    done: set[str] = set()
    for job in jobs:
        stack: list[str] = []
        cycle = _find_cycle(job.name, by_name, stack, set(), done)
        if cycle is not None:
            raise where_of(by_name[cycle[0]]).fail(f'key "needs": cycle {" -> ".join(cycle)}')


def _find_cycle(
    name: str, jobs: dict[str, JobSpec], stack: list[str], on_stack: set[str], done: set[str]
) -> list[str] | None:
    if name in on_stack:
        return [*stack[stack.index(name) :], name]
    if name in done:
        return None
    stack.append(name)
    on_stack.add(name)
    for need in jobs[name].needs:
        cycle = _find_cycle(need, jobs, stack, on_stack, done)
        if cycle is not None:
            return cycle
    stack.pop()
    on_stack.discard(name)
    done.add(name)
    return None


def target_matches(project: ProjectSpec, ident: TargetId) -> bool:
    """Is ``ident`` one of the project's targets? Ref globs match the ref
    name without ``refs/`` (``heads/*``: ``*`` crosses ``/`` as in fnmatch);
    the word ``prs`` takes every PR."""
    if ident.repo != project.repo:
        return False
    if isinstance(ident, PRId):
        return "prs" in project.targets
    name = "/".join(ident.name)
    return any(g != "prs" and fnmatch.fnmatchcase(name, g) for g in project.targets)


def parse_canary(text: str) -> TargetId:
    """``user/repo/heads/<b>``, ``user/repo/tags/<t>`` or ``user/repo/prs/<n>``
    (upstream's ``--canary``); ValueError naming the problem."""
    parts = text.strip().split("/")
    if len(parts) < 4:
        raise ValueError(
            f"bad canary {text!r}: expected user/repo/heads/BRANCH, user/repo/tags/TAG "
            "or user/repo/prs/NUMBER"
        )
    repo = Repo.parse(f"{parts[0]}/{parts[1]}")
    kind, rest = parts[2], parts[3:]
    if kind == "prs":
        if len(rest) != 1 or not rest[0].isascii() or not rest[0].isdigit():
            raise ValueError(f"bad canary {text!r}: invalid PR number {'/'.join(rest)!r}")
        return PRId(repo, int(rest[0]))
    if kind in ("heads", "tags"):
        if not all(rest):
            raise ValueError(f"bad canary {text!r}: empty component in the ref name")
        return RefId(repo, (kind, *rest))
    raise ValueError(f"bad canary {text!r}: bad target type {kind!r} (should be heads/tags/prs)")


__all__ = [
    "DEFAULT_TIMEOUT",
    "JOB_NAME_MAX",
    "ConfigError",
    "load_config",
    "parse_canary",
    "parse_config",
    "resolve_source",
    "target_matches",
]
