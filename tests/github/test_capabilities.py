"""Capabilities beyond BR-10's table: filtering diffs, printing."""

from __future__ import annotations

from datakit.github.capabilities import Capabilities, Ops
from datakit.github.model import (
    PR,
    Commit,
    Diff,
    PRId,
    PRState,
    Ref,
    RefId,
    Repo,
    Status,
    StatusId,
    StatusState,
)

R = Repo("u", "r")
A = "a" * 40


def status(*context: str) -> Status:
    return Status(R, A, context, StatusState.SUCCESS)


def test_filter_diff_first_sync_and_after() -> None:
    caps = Capabilities.parse("*:r,status[ci/datakit]:x")
    diff = Diff(
        frozenset(
            {
                status("ci", "datakit", "a"),
                status("other", "b"),
                PR(R, 1, A, PRState.OPEN, "t"),
                Ref(R, ("heads", "master"), A),
                Commit(R, A),
            }
        ),
        frozenset({StatusId(R, A, ("ci", "datakit", "old")), PRId(R, 2), RefId(R, ("x",))}),
    )
    first = caps.exportable(diff, first_sync=True)
    assert first.updates == {status("ci", "datakit", "a")}
    assert first.removals == {StatusId(R, A, ("ci", "datakit", "old"))}
    later = caps.exportable(diff, first_sync=False)
    assert later == first
    rw = Capabilities.all()
    assert rw.exportable(diff, first_sync=True) == Diff()
    assert rw.exportable(diff, first_sync=False) == diff


def test_repo_capabilities_use_user_then_name() -> None:
    caps = Capabilities.parse("*:rw,repo[u]:r,repo[u/r]:")
    assert not caps.allows("r", R)
    assert caps.allows("r", Repo("u", "other")) and not caps.allows("w", Repo("u", "other"))
    assert caps.allows("w", Repo("v", "r"))


def test_str_round_trips() -> None:
    caps = Capabilities.parse("*:r,status[ci/datakit]:x,webhook:rw,pr:")
    assert str(caps) == "*:r,status[ci/datakit]:x,webhook:rw,pr:"
    assert Capabilities.parse(str(caps)) == caps
    assert str(Ops.parse("xr")) == "rx"
