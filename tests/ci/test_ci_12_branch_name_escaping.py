"""CI-12: history branch names escape users, repositories and refs the way
upstream did, parse back to the same target, and are always valid DataKit
branch names."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.ci.naming import escape, history_branch, parse_history_branch, unescape
from datakit.client.api import check_branch_name
from datakit.github.model import PRId, RefId, Repo

# Users and repositories as GitHub (and Repo.parse) allows them.
names = st.from_regex(r"[A-Za-z0-9_.-]{1,30}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
# Ref components: anything a path step may be (no "/", not "." or "..").
components = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
repos = st.builds(Repo, names, names)
refs = st.builds(
    RefId,
    repos,
    st.tuples(st.sampled_from(["heads", "tags"]), st.lists(components, min_size=1, max_size=3)).map(
        lambda t: (t[0], *t[1])
    ),
)
prs = st.builds(PRId, repos, st.integers(min_value=0, max_value=10**9))


def test_ci_12_branch_name_escaping() -> None:
    ident = RefId(Repo("a_b", "c-d"), ("heads", "fix", "x-y"))
    name = history_branch(ident)
    assert name == "status-a_5fb-c_2dd-ref-heads-fix_2fx_2dy"
    assert parse_history_branch(name) == ident
    assert check_branch_name(name) == name


@settings(max_examples=300, deadline=None)
@given(st.one_of(refs, prs))
def test_ci_12_round_trip(ident: RefId | PRId) -> None:
    name = history_branch(ident)
    assert check_branch_name(name) == name
    if name.count("-") > 2:  # else overlong: a hashed stand-in, status-h-<hex>
        assert parse_history_branch(name) == ident


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_ci_12_escape_round_trip(text: str) -> None:
    escaped = escape(text)
    assert unescape(escaped) == text
    assert "-" not in escaped and "/" not in escaped
