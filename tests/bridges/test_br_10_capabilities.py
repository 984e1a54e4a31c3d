"""BR-10 (spec/bridges.md §7): capability parsing and the §3.5 check table.

The CLI half of BR-10 (the bridge starting or exiting non-zero) lives with
the bridge's tests; this is the pure part, upstream's
``tests/datakit-bridge-github/test.ml`` table.
"""

from __future__ import annotations

import pytest

from datakit.github.capabilities import Capabilities, CapabilityError


def check(caps: str, op: str, kind: str, path: tuple[str, ...] = ()) -> bool:
    return Capabilities.parse(caps).can(op, kind, path)


def test_br_10_capability_parsing() -> None:
    # These start (parse).
    for good in (
        "pr:rw,status:w",
        "*:w,commit:,webhook:r",
        "repo:r,repo[samoht]:w",
        "*:r,status[ci/datakit]:x,webhook:rw",
        "*:rw",
    ):
        Capabilities.parse(good)
    # These are refused, naming the bad part.
    for bad, message in (
        ("foo:r", "foo: invalid resource"),
        ("pr", "pr: missing ':'"),
        ("pr:q", "q: invalid capacities"),
        ("*:r,pr[x]:r", "pr[x]: invalid resource"),
        ("status[a/b:r", "status[a/b: invalid resource"),
        ("status[]:r", "status[]: invalid resource"),
    ):
        with pytest.raises(CapabilityError) as info:
            Capabilities.parse(bad)
        assert str(info.value) == message, bad

    # The table of §3.5.
    assert check("*:rw", "r", "status") and check("*:rw", "w", "status")
    assert not check("*:rw", "x", "status")
    assert not check("*:w", "r", "pr")
    assert all(check("*:x", op, "pr") for op in "rwx")
    samoht = ("samoht", "test")
    assert not check("repo[samoht]:w,repo:r", "r", "repo", samoht)
    assert check("repo[samoht]:w,repo:r", "w", "repo", samoht)
    assert check("*:w,pr:r", "r", "pr") and not check("*:w,pr:r", "w", "pr")
    assert not check("*:w,pr:r", "r", "commit") and check("*:w,pr:r", "w", "commit")
    assert check("*:r,status[foo]:x,webhook:w", "x", "status", ("foo",))
    assert not check("*:r,status[foo]:x,webhook:w", "x", "status", ("bar",))
    assert check("status[foo/bar]:r", "r", "status", ("foo", "bar", "0"))
    # Longest prefix wins.
    caps = "status[foo]:r,status[foo/bar]:w"
    assert check(caps, "w", "status", ("foo", "bar", "0"))
    assert not check(caps, "r", "status", ("foo", "bar", "0"))
    assert check(caps, "r", "status", ("foo", "baz"))
    assert not check(caps, "w", "status", ("foo", "baz"))
    # Without '*', what is not listed is not allowed; the default is *:rw.
    assert not check("pr:rw", "r", "ref")
    default = Capabilities.all()
    assert default == Capabilities.parse("*:rw")
    assert default.can("r", "webhook") and default.can("w", "ref") and not default.can("x", "pr")
