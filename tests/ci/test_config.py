"""The TOML configuration (spec ci.md B.2): defaults, every check, targets
and canaries."""

from __future__ import annotations

import pytest

from datakit.ci.config import ConfigError, parse_canary, parse_config, target_matches
from datakit.ci.model import JobSpec
from datakit.github.model import PRId, RefId, Repo

FULL = """
[[project]]
repo = "me/proj"
source = "/srv/git/proj.git"
dashboards = ["master", "dev"]
targets = ["heads/*", "tags/v*"]

[[project.job]]
name = "build"
run = "make"

[[project.job]]
name = "test"
run = ["make", "test"]
timeout = 60
image = "localhost/ci-base"
network = "host"
needs = ["build"]
env = { CI_LEVEL = "2", OTHER = "x y" }

[[project]]
repo = "me/other"
source = "https://example.com/other.git"

[[project.job]]
name = "ok"
run = ["true"]
"""

MINIMAL = """
[[project]]
repo = "me/p"
source = "/tmp/p"
[[project.job]]
name = "ok"
run = "true"
"""


def test_full_configuration() -> None:
    config = parse_config(FULL, "ci.toml")
    assert config.path == "ci.toml"
    first, second = config.projects
    assert first.repo == Repo("me", "proj")
    assert first.source == "/srv/git/proj.git"
    assert first.dashboards == ("master", "dev")
    assert first.targets == ("heads/*", "tags/v*")
    assert first.jobs == (
        JobSpec(name="build", run="make"),
        JobSpec(
            name="test",
            run=("make", "test"),
            timeout=60.0,
            image="localhost/ci-base",
            network="host",
            needs=("build",),
            env=(("CI_LEVEL", "2"), ("OTHER", "x y")),
        ),
    )
    assert first.jobs[0].argv == ["sh", "-c", "make"]
    assert second.dashboards == ("master",)
    assert second.targets == ("heads/*", "prs")
    assert second.jobs[0].timeout == 3600.0
    assert config.project(Repo("me", "other")) is second


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "ci.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("ci.toml: ")
    return message


def _with_job(lines: str) -> str:
    return MINIMAL.replace('name = "ok"\nrun = "true"\n', lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "no [[project]]"),
        ("x = 1\n" + MINIMAL, 'top level: unknown key "x"'),
        ("[project]\nrepo = 'me/p'\n", "must be an array of tables"),
        (MINIMAL.replace('repo = "me/p"\n', ""), '[[project]] #1: missing key "repo"'),
        (MINIMAL.replace('"me/p"', '"nope"'), 'key "repo": Bad repository name'),
        (MINIMAL.replace('source = "/tmp/p"\n', ""), '(me/p): missing key "source"'),
        (MINIMAL.replace('source = "/tmp/p"', "source = 3"), 'key "source": expected a string'),
        (MINIMAL + "srouce = 1\n", '[[project.job]] #1 "ok": unknown key "srouce"'),
        (
            MINIMAL.replace('source = "/tmp/p"', 'source = "/tmp/p"\ndashboards = "master"'),
            'key "dashboards": expected an array',
        ),
        (MINIMAL.split("[[project.job]]")[0], 'missing key "job"'),
        (MINIMAL + MINIMAL, 'key "repo": duplicate repository me/p'),
        (_with_job('name = "ok"\n'), '[[project.job]] #1 "ok": missing key "run"'),
        (_with_job('run = "true"\n'), '[[project.job]] #1: missing key "name"'),
        (_with_job('name = ".x"\nrun = "true"\n'), 'key "name"'),
        (_with_job('name = "a b"\nrun = "true"\n'), 'key "name"'),
        (_with_job('name = "state"\nrun = "true"\n'), 'key "name"'),
        (_with_job('name = "ok"\nrun = []\n'), 'key "run": must not be an empty array'),
        (_with_job('name = "ok"\nrun = [1]\n'), 'key "run": expected a string'),
        (_with_job('name = "ok"\nrun = "  "\n'), 'key "run": must be a non-empty'),
        (_with_job('name = "ok"\nrun = "t"\ntimeout = 0\n'), 'key "timeout"'),
        (_with_job('name = "ok"\nrun = "t"\ntimeout = true\n'), 'key "timeout"'),
        (_with_job('name = "ok"\nrun = "t"\ntimeout = "1"\n'), 'key "timeout"'),
        (_with_job('name = "ok"\nrun = "t"\nnetwork = "host"\n'), 'key "network": only'),
        (_with_job('name = "ok"\nrun = "t"\nneeds = ["zz"]\n'), 'no job named "zz"'),
        (_with_job('name = "ok"\nrun = "t"\nneeds = ["ok"]\n'), 'key "needs": cycle ok -> ok'),
        (_with_job('name = "ok"\nrun = "t"\nenv = { "A-B" = "1" }\n'), 'key "env"'),
        (_with_job('name = "ok"\nrun = "t"\nenv = { A = 1 }\n'), 'key "env": A must be'),
        (_with_job('name = "ok"\nrun = "t"\nenv = "A=1"\n'), 'key "env": expected a table'),
        ("[[project]\n", "not valid TOML"),
    ],
)
def test_errors_name_file_table_and_key(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_duplicate_job_and_long_cycle() -> None:
    dup = MINIMAL + '[[project.job]]\nname = "ok"\nrun = "false"\n'
    message = _error(dup)
    assert '[[project.job]] #2 "ok": key "name": duplicate job name "ok"' in message
    cycle = _with_job(
        'name = "a"\nrun = "t"\nneeds = ["b"]\n'
        '[[project.job]]\nname = "b"\nrun = "t"\nneeds = ["c"]\n'
        '[[project.job]]\nname = "c"\nrun = "t"\nneeds = ["a"]\n'
    )
    assert 'key "needs": cycle a -> b -> c -> a' in _error(cycle)
    diamond = _with_job(
        'name = "a"\nrun = "t"\n'
        '[[project.job]]\nname = "b"\nrun = "t"\nneeds = ["a"]\n'
        '[[project.job]]\nname = "c"\nrun = "t"\nneeds = ["a", "b"]\n'
    )
    assert [j.name for j in parse_config(diamond).projects[0].jobs] == ["a", "b", "c"]


def test_target_matches() -> None:
    project = parse_config(FULL).projects[0]  # heads/*, tags/v*: no PRs
    repo = project.repo
    assert target_matches(project, RefId(repo, ("heads", "master")))
    assert target_matches(project, RefId(repo, ("heads", "feature", "x")))
    assert target_matches(project, RefId(repo, ("tags", "v1.0")))
    assert not target_matches(project, RefId(repo, ("tags", "release")))
    assert not target_matches(project, PRId(repo, 1))
    assert not target_matches(project, RefId(Repo("me", "other"), ("heads", "master")))
    other = parse_config(FULL).projects[1]  # defaults: heads/* and prs
    assert target_matches(other, PRId(other.repo, 7))
    assert not target_matches(other, RefId(other.repo, ("tags", "v1")))


def test_parse_canary() -> None:
    me_p = Repo("me", "p")
    assert parse_canary("me/p/heads/master") == RefId(me_p, ("heads", "master"))
    assert parse_canary("me/p/heads/fix/x") == RefId(me_p, ("heads", "fix", "x"))
    assert parse_canary("me/p/tags/v1") == RefId(me_p, ("tags", "v1"))
    assert parse_canary("me/p/prs/5") == PRId(me_p, 5)
    for bad in ("me/p", "me/p/prs/x", "me/p/pulls/1", "me/p/heads/", "bad name/p/heads/x"):
        with pytest.raises(ValueError):
            parse_canary(bad)
