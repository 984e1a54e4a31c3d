"""The metadata model (datakit/github/model.py): pure values."""

from __future__ import annotations

import pytest

from datakit.github.model import (
    PR,
    Comment,
    Commit,
    Diff,
    PRId,
    PRState,
    PRUpdated,
    Ref,
    RefId,
    RefRemoved,
    RefUpdated,
    Repo,
    Snapshot,
    Status,
    StatusId,
    StatusState,
    StatusUpdated,
    context_of,
)

R = Repo("u", "r")
A, B, C = "a" * 40, "b" * 40, "c" * 40


def pr(n: int = 3, head: str = A, state: PRState = PRState.OPEN, title: str = "Fix") -> PR:
    return PR(R, n, head, state, title, "master", "alice", (Comment(0, "alice", "why"),))


def test_repo_parse_and_str() -> None:
    assert Repo.parse("u/r") == R
    assert str(R) == "u/r"
    for bad in ("me", "a/b/c", "/r", "u/", "u/r r", "../x"):
        with pytest.raises(ValueError) as info:
            Repo.parse(bad)
        assert str(info.value) == f'Bad repository name "{bad}" (format should be user/project)'


def test_values_are_hashable_and_have_ids() -> None:
    p = pr()
    assert {p, pr()} == {p}
    assert p.id == PRId(R, 3)
    assert p.head_commit == Commit(R, A)
    ref = Ref(R, ("heads", "feature", "x"), B)
    assert ref.id == RefId(R, ("heads", "feature", "x"))
    s = Status(R, C, ("ci", "x"), StatusState.SUCCESS, None, "http://u")
    assert s.id == StatusId(R, C, ("ci", "x"))
    assert s.context_str == "ci/x"
    assert PRState("open") is PRState.OPEN and str(StatusState.FAILURE) == "failure"


def test_null_context_is_default() -> None:
    assert context_of(None) == ("default",)
    assert context_of("") == ("default",)
    assert context_of("ci/datakit/test") == ("ci", "datakit", "test")


def test_snapshot_implies_repos_and_commits() -> None:
    s = Snapshot(prs=frozenset({pr()}))
    assert s.repos == {R}
    assert s.commits == {Commit(R, A)}
    assert s.pr(PRId(R, 3)) == pr()
    assert PRId(R, 3) in s and pr() in s and pr(title="x") not in s
    assert s.find(PRId(R, 4)) is None


def test_diff_and_apply_diff_round_trip() -> None:
    old = Snapshot.of([pr(), Ref(R, ("heads", "master"), A)])
    new = Snapshot.of([pr(title="New"), Status(R, A, ("ci",), StatusState.PENDING, "d", None)])
    d = new.diff(old)
    assert pr(title="New") in d.updates
    assert RefId(R, ("heads", "master")) in d.removals
    assert old.apply_diff(d) == new
    assert new.diff(new) == Diff() and not new.diff(new)


def test_prune() -> None:
    closed = pr(4, head=B, state=PRState.CLOSED)
    s = Snapshot.of(
        [
            pr(),
            closed,
            Ref(R, ("heads", "master"), C),
            Status(R, A, ("ci",), StatusState.SUCCESS),
            Status(R, B, ("ci",), StatusState.SUCCESS),
            Status(R, C, ("ci",), StatusState.SUCCESS),
            Commit(R, "d" * 40),
        ]
    )
    p = s.prune()
    assert p.prs == {pr()}
    assert p.commits == {Commit(R, A), Commit(R, C)}
    assert {st.commit for st in p.statuses} == {A, C}
    assert p.repos == {R}


def test_replace_repo_and_events() -> None:
    other = Repo("o", "x")
    s = Snapshot.of([pr(), Ref(other, ("heads", "master"), A)])
    fresh = Snapshot.of([Ref(R, ("tags", "v1"), B)])
    r = s.replace_repo(R, fresh)
    assert r.prs == frozenset()
    assert r.refs == {Ref(other, ("heads", "master"), A), Ref(R, ("tags", "v1"), B)}
    assert R in r.repos
    assert s.replace_repo(R, Snapshot()).repos == {R, other}

    e = s.apply(PRUpdated(pr(state=PRState.CLOSED)))
    assert e.pr(PRId(R, 3)) == pr(state=PRState.CLOSED)
    assert e.prune().prs == frozenset()
    ref = Ref(R, ("heads", "x"), C)
    assert s.apply(RefUpdated(ref, created=True)).ref(ref.id) == ref
    assert s.apply(RefUpdated(ref)).apply(RefRemoved(ref.id)).ref(ref.id) is None
    st = Status(R, A, ("default",), StatusState.ERROR)
    assert s.apply(StatusUpdated(st)).status(st.id) == st


def test_replace_refs_keeps_everything_else() -> None:
    other = Repo("o", "x")
    st = Status(R, A, ("ci",), StatusState.SUCCESS)
    s = Snapshot.of([pr(), st, Ref(R, ("heads", "old"), A), Ref(other, ("heads", "m"), B)])
    new = s.replace_refs(R, [Ref(R, ("heads", "new"), C)])
    assert new.refs == {Ref(R, ("heads", "new"), C), Ref(other, ("heads", "m"), B)}
    assert new.prs == s.prs and new.statuses == s.statuses
    assert Snapshot().replace_refs(R, []).repos == {R}
