"""Names of branches, index entries and URLs (spec ci.md A.4, B.5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datakit.ci.config import JOB_NAME_MAX
from datakit.ci.model import JobSpec
from datakit.ci.naming import (
    escape,
    history_branch,
    index_path,
    parse_history_branch,
    parse_target_sub,
    result_branch,
    target_label,
    target_path,
    target_sub,
    target_url,
    unescape,
)
from datakit.client.api import check_branch_name
from datakit.github.model import PRId, RefId, Repo

ME_P = Repo("me", "p")


def test_escape_keeps_alphanumerics_and_dots() -> None:
    assert escape("master") == "master"
    assert escape("v1.0") == "v1.0"
    assert escape("a_b") == "a_5fb"
    assert escape("c-d") == "c_2dd"
    assert escape("fix/x-y") == "fix_2fx_2dy"
    assert escape("é") == "_c3_a9"  # per UTF-8 byte


def test_escape_dots_git_would_refuse() -> None:
    assert escape("v1.") == "v1_2e"
    assert escape("a..b") == "a_2e_2eb"
    assert escape("x.lock") == "x_2elock"
    for text in ("v1.", "a..b", "x.lock", ".hidden"):
        assert unescape(escape(text)) == text


def test_unescape_refuses_what_escape_cannot_make() -> None:
    for bad in ("a-b", "_zz", "_4", "a/b", "_ff"):
        with pytest.raises(ValueError):
            unescape(bad)


def test_upstream_examples() -> None:
    assert history_branch(PRId(Repo("user", "project"), 3907)) == "status-user-project-pr-3907"
    assert (
        history_branch(RefId(Repo("moby", "datakit"), ("heads", "master")))
        == "status-moby-datakit-ref-heads-master"
    )
    assert history_branch(RefId(ME_P, ("heads", "master"))) == "status-me-p-ref-heads-master"


def test_target_sub_and_parse() -> None:
    assert target_sub(PRId(ME_P, 3)) == "pr-3"
    assert target_sub(RefId(ME_P, ("heads", "master"))) == "ref-heads-master"
    assert target_sub(RefId(ME_P, ("tags", "v1", "x"))) == "ref-tags-v1_2fx"
    assert parse_target_sub(ME_P, "ref-tags-v1_2fx") == RefId(ME_P, ("tags", "v1", "x"))
    assert parse_target_sub(ME_P, "pr-12") == PRId(ME_P, 12)
    for bad in ("pr-012", "pr-x", "pr-1-2", "ref-heads", "foo-bar", "", "ref--x"):
        with pytest.raises(ValueError):
            parse_target_sub(ME_P, bad)


def test_parse_history_branch_refuses_others() -> None:
    for bad in ("master", "status-me", "status-me-p", "status-me-p-foo-1", "shell-of-x-on-y"):
        with pytest.raises(ValueError):
            parse_history_branch(bad)


def test_result_branch() -> None:
    job = JobSpec(name="unit-test", run=("true",))
    sha = "a" * 40
    name = result_branch(job, sha)
    assert name == f"shell-of-unit_2dtest-{job.definition_hash}-on-{sha}"
    assert check_branch_name(name) == name
    edited = JobSpec(name="unit-test", run=("false",))
    assert result_branch(edited, sha) != name


def test_overlong_names_stay_valid() -> None:
    ident = RefId(ME_P, ("heads", "-" * 200))
    name = history_branch(ident)
    assert check_branch_name(name) == name
    assert name == history_branch(ident)  # stable
    with pytest.raises(ValueError):
        parse_history_branch(name)
    job = JobSpec(name="-" * 100, run=("true",))
    assert check_branch_name(result_branch(job, "b" * 40))


def test_index_path() -> None:
    sha = "c" * 40
    assert index_path(ME_P, sha, RefId(ME_P, ("heads", "master"))) == (
        "me",
        "p",
        "commit",
        sha,
        "ref-heads-master",
    )
    assert index_path(ME_P, sha, PRId(ME_P, 5))[-1] == "pr-5"


def test_urls() -> None:
    sha = "d" * 40
    expected = f"http://ci.example/me/p/commit/{sha}?test=ok"
    assert target_url("http://ci.example/", ME_P, sha, "ok") == expected
    assert target_url("http://ci.example", ME_P, sha, "ok") == expected
    assert target_path(PRId(ME_P, 5)) == "/me/p/pr/5"
    assert target_path(RefId(ME_P, ("heads", "master"))) == "/me/p/ref/heads/master"
    assert target_path(RefId(ME_P, ("heads", "a#b?c"))) == "/me/p/ref/heads/a%23b%3Fc"
    assert target_label(PRId(ME_P, 5)) == "me/p/pr/5"
    assert target_label(RefId(ME_P, ("heads", "fix", "x"))) == "me/p/ref/heads/fix/x"


@given(
    st.from_regex(rf"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{JOB_NAME_MAX - 1}}}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
)
def test_result_branch_of_any_configurable_job(name: str, sha: str) -> None:
    """Every job name the configuration accepts gives a full (not hashed)
    valid result branch name."""
    branch = result_branch(JobSpec(name=name, run="true"), sha)
    assert check_branch_name(branch) == branch
    assert branch.startswith(f"shell-of-{escape(name)}-") and branch.endswith(f"-on-{sha}")
