"""The github-metadata layout (datakit/github/tree.py) on both client
backends: round trips, byte-exact files, minimal writes, commit messages,
``.dirty`` markers, following the branch, and the tolerant reader."""

from __future__ import annotations

import logging

import pytest

from datakit.client import Branch, Transaction
from datakit.github import tree as layout
from datakit.github.model import (
    PR,
    Comment,
    Commit,
    PRId,
    PRState,
    Ref,
    RefId,
    Repo,
    Snapshot,
    Status,
    StatusId,
    StatusState,
)

R = Repo("u", "r")
A, B, C, D = "a" * 40, "b" * 40, "c" * 40, "d" * 40


def full() -> Snapshot:
    return Snapshot.of(
        [
            PR(
                R,
                3,
                A,
                PRState.OPEN,
                "Fix",
                "master",
                "alice",
                (Comment(0, "alice", "why"), Comment(7, "bob", "ok\n\n  indented ")),
            ),
            PR(R, 12, B, PRState.OPEN, "", "dev", "carol"),
            Ref(R, ("heads", "master"), C),
            Ref(R, ("heads", "feature", "x"), B),
            Ref(R, ("tags", "v1"), C),
            Status(R, C, ("ci", "datakit"), StatusState.SUCCESS, "All good", "http://ci/1"),
            Status(R, C, ("ci", "datakit", "test"), StatusState.PENDING, None, None),
            Status(R, C, ("default",), StatusState.ERROR, "", None),
            Status(R, A, ("ci", "circleci"), StatusState.FAILURE, None, "http://c/2"),
        ]
    )


def commit_write(branch: Branch, old: Snapshot, new: Snapshot, **kw: object) -> layout.Summary:
    with branch.transaction() as t:
        summary = layout.write(t, old, new, **kw)  # type: ignore[arg-type]
        if not layout.is_empty(summary):
            t.commit(layout.commit_message(summary))
    return summary


def files(branch: Branch, root: str = "") -> dict[str, bytes]:
    head = branch.head()
    assert head is not None
    tree = head.tree()
    out: dict[str, bytes] = {}

    def walk(path: str) -> None:
        for name in tree.read_dir(path):
            p = f"{path}/{name}" if path else name
            if tree.exists_dir(p):
                walk(p)
            else:
                out[p] = tree.read_file(p)

    walk(root)
    return out


def test_round_trip_and_byte_exact_files(branch: Branch) -> None:
    snap = full()
    summary = commit_write(branch, Snapshot(), snap)
    head = branch.head()
    assert head is not None
    assert layout.read_snapshot(head.tree(), [R]) == snap
    got = files(branch)
    assert got == {
        "u/r/pr/3/head": A.encode() + b"\n",
        "u/r/pr/3/state": b"open\n",
        "u/r/pr/3/title": b"Fix\n",
        "u/r/pr/3/owner": b"alice\n",
        "u/r/pr/3/base": b"master\n",
        "u/r/pr/3/comments/0/id": b"0\n",
        "u/r/pr/3/comments/0/user": b"alice\n",
        "u/r/pr/3/comments/0/body": b"why",
        "u/r/pr/3/comments/1/id": b"7\n",
        "u/r/pr/3/comments/1/user": b"bob\n",
        "u/r/pr/3/comments/1/body": b"ok\n\n  indented ",
        "u/r/pr/12/head": B.encode() + b"\n",
        "u/r/pr/12/state": b"open\n",
        "u/r/pr/12/title": b"\n",
        "u/r/pr/12/owner": b"carol\n",
        "u/r/pr/12/base": b"dev\n",
        "u/r/ref/heads/master/head": C.encode() + b"\n",
        "u/r/ref/heads/feature/x/head": B.encode() + b"\n",
        "u/r/ref/tags/v1/head": C.encode() + b"\n",
        f"u/r/commit/{C}/status/ci/datakit/state": b"success\n",
        f"u/r/commit/{C}/status/ci/datakit/description": b"All good\n",
        f"u/r/commit/{C}/status/ci/datakit/target_url": b"http://ci/1\n",
        f"u/r/commit/{C}/status/ci/datakit/test/state": b"pending\n",
        f"u/r/commit/{C}/status/default/state": b"error\n",
        f"u/r/commit/{C}/status/default/description": b"\n",
        f"u/r/commit/{A}/status/ci/circleci/state": b"failure\n",
        f"u/r/commit/{A}/status/ci/circleci/target_url": b"http://c/2\n",
    }
    assert len(summary.updated) == 9 and summary.removed == ()
    assert head.message.startswith("9 items updated\n\nPR u/r#3 ")
    # Not monitored: the default read sees nothing until .monitor exists.
    assert layout.read_snapshot(head.tree()) == Snapshot()
    with branch.transaction() as t:
        layout.write_monitor(t, R)
        t.commit("initial commit")
    head = branch.head()
    assert head is not None
    assert head.tree().read_file("u/r/.monitor") == b""
    assert layout.monitored(head.tree()) == {R}
    assert layout.read_snapshot(head.tree()) == snap


def test_writing_the_same_snapshot_changes_nothing(branch: Branch) -> None:
    commit_write(branch, Snapshot(), full())
    before = branch.head()
    summary = commit_write(branch, full(), full())
    assert layout.is_empty(summary) and summary.updated == () and summary.removed == ()
    assert branch.head() == before
    # A stale "old" that claims a difference: the bytes end up equal, no commit.
    stale = full().with_elements([Ref(R, ("heads", "master"), D)])
    summary = commit_write(branch, stale, full())
    assert summary.updated and layout.is_empty(summary)
    assert branch.head() == before


def test_updates_and_removals(branch: Branch) -> None:
    old = full()
    commit_write(branch, Snapshot(), old)
    new = (
        old.without(
            [
                PRId(R, 12),
                RefId(R, ("heads", "feature")),  # not there: no-op
                RefId(R, ("heads", "feature", "x")),
                StatusId(R, A, ("ci", "circleci")),
                StatusId(R, C, ("ci", "datakit")),
            ]
        )
        .with_elements(
            [
                PR(R, 3, D, PRState.OPEN, "New", "master", "alice", (Comment(0, "alice", "b"),)),
                Status(R, C, ("default",), StatusState.SUCCESS, None, "http://x"),
                Ref(R, ("heads", "feature"), A),
            ]
        )
        .prune()
    )
    summary = commit_write(branch, old, new)
    head = branch.head()
    assert head is not None
    assert layout.read_snapshot(head.tree(), [R]) == new
    got = files(branch)
    # Comments rewritten whole; the commit directory of A vanished with its
    # only status; the nested ci/datakit/test survived ci/datakit's removal.
    assert [p for p in got if "/comments/" in p] == [
        "u/r/pr/3/comments/0/body",
        "u/r/pr/3/comments/0/id",
        "u/r/pr/3/comments/0/user",
    ]
    assert not head.tree().exists(f"u/r/commit/{A}")
    assert not head.tree().exists("u/r/pr/12")
    assert got[f"u/r/commit/{C}/status/ci/datakit/test/state"] == b"pending\n"
    assert not head.tree().exists(f"u/r/commit/{C}/status/ci/datakit/state")
    assert got[f"u/r/commit/{C}/status/default/target_url"] == b"http://x\n"
    assert f"u/r/commit/{C}/status/default/description" not in got
    assert got["u/r/ref/heads/feature/head"] == A.encode() + b"\n"
    assert not head.tree().exists("u/r/ref/heads/feature/x")
    assert head.message == layout.commit_message(summary) + "\n"
    assert head.message.startswith(f"{len(summary.updated) + len(summary.removed)} items modified")


def test_commit_messages() -> None:
    pr = PR(R, 3, A, PRState.OPEN, "Fix", "master", "alice")
    ref = Ref(R, ("heads", "x"), B)
    msg = layout.commit_message
    assert msg(layout.Summary(updated=(pr,))) == f"1 item updated\n\nPR u/r#3 {A} open 'Fix'"
    assert msg(layout.Summary(updated=(ref, pr))) == (
        f"2 items updated\n\nPR u/r#3 {A} open 'Fix'\nref u/r heads/x {B}"
    )
    assert msg(layout.Summary(removed=(ref.id,))) == "1 item removed\n\nref u/r heads/x"
    assert msg(layout.Summary(removed=(ref.id, pr.id))) == (
        "2 items removed\n\nPR u/r#3\nref u/r heads/x"
    )
    assert msg(layout.Summary(updated=(pr,), removed=(ref.id, Commit(R, C)))) == (
        f"3 items modified\n\nUpdated\n  PR u/r#3 {A} open 'Fix'\n\n"
        f"Removed\n  commit u/r {C}\n  ref u/r heads/x"
    )
    assert msg(layout.Summary(cleaned=(R,))) == "Cleaning up .dirty files"
    assert layout.is_empty(layout.Summary(updated=(pr,)))  # nothing changed in the tree
    assert not layout.is_empty(layout.Summary(paths=("u/r/.dirty",)))


def test_dirty_markers_are_found_and_cleaned(branch: Branch) -> None:
    commit_write(branch, Snapshot(), full())
    marks = {R, PRId(R, 3), RefId(R, ("heads", "feature", "x")), RefId(R, ("heads", "new"))}
    with branch.transaction() as t:
        for m in marks:
            layout.mark_dirty(t, m)
        t.create_file("u/r/pr/zz", b"")  # junk next to them
        t.commit("please re-import")
    head = branch.head()
    assert head is not None
    assert layout.dirty(head.tree()) == marks
    assert head.tree().read_file("u/r/ref/heads/feature/x/.dirty") == b""
    # The markers appear in the branch's diff too.
    changes = layout.changed_ids(head.parents[0], head)
    assert changes.dirty == marks
    assert changes.ids == frozenset()
    before = layout.view(head.parents[0])
    assert layout.view(head, before).dirty == marks
    summary = commit_write(branch, full(), full(), clean=marks)
    assert set(summary.cleaned) == marks and not layout.is_empty(summary)
    head = branch.head()
    assert head is not None
    assert head.message == "Cleaning up .dirty files\n"
    assert layout.changed_ids(head.parents[0], head).undirty == marks
    assert layout.dirty(head.tree()) == frozenset()
    assert layout.read_snapshot(head.tree(), [R]) == full()


def test_changed_ids_and_refresh(branch: Branch) -> None:
    commit_write(branch, Snapshot(), full())
    with branch.transaction() as t:
        layout.write_monitor(t, R)
        t.commit("initial commit")
    first = branch.head()
    assert first is not None
    everything = layout.changed_ids(None, first)
    assert R in everything.ids and PRId(R, 3) in everything.ids
    assert StatusId(R, C, ("ci", "datakit", "test")) in everything.ids
    assert layout.refresh(first.tree(), Snapshot(), everything.ids) == full()

    # A client edits: a title, a new status, removes a ref, adds junk.
    with branch.transaction() as t:
        t.replace_file("u/r/pr/3/title", b"Renamed\n")
        t.make_dirs(f"u/r/commit/{B}/status/ci/x")
        t.create_file(f"u/r/commit/{B}/status/ci/x/state", b"pending\n")
        t.remove("u/r/ref/tags/v1")
        t.create_file("u/junk", b"")
        t.create_file("README.md", b"hello")
        t.commit("client")
    second = branch.head()
    assert second is not None
    changes = layout.changed_ids(first, second)
    assert changes.ids == {
        PRId(R, 3),
        StatusId(R, B, ("ci", "x")),
        Commit(R, B),
        RefId(R, ("tags", "v1")),
    }
    refreshed = layout.refresh(second.tree(), full(), changes.ids)
    assert refreshed == layout.read_snapshot(second.tree())
    pr = refreshed.pr(PRId(R, 3))
    assert pr is not None and pr.title == "Renamed"
    # Removing .monitor forgets the repository.
    with branch.transaction() as t:
        t.remove("u/r/.monitor")
        t.commit("stop")
    third = branch.head()
    assert third is not None
    gone = layout.changed_ids(second, third)
    assert gone.ids == {R}
    assert layout.refresh(third.tree(), refreshed, gone.ids) == Snapshot()

    # The same, as a view followed head by head.
    v1 = layout.view(first)
    assert v1.snapshot == full() and v1.monitored == {R} and v1.dirty == frozenset()
    v2 = layout.view(second, v1)
    assert v2 == layout.view(second) and v2.snapshot == refreshed
    v3 = layout.view(third, v2)
    assert v3 == layout.view(third) and v3.snapshot == Snapshot() and v3.monitored == set()
    assert layout.view(third, v3) is v3
    assert layout.view(None) == layout.View()


def test_a_commit_with_no_valid_status_is_followed_like_a_full_read(branch: Branch) -> None:
    """Junk a hypothesis run found: a file where a status directory belongs.
    The commit directory exists (a full read has the commit) though no
    status in it is valid, so following the branch must find it too."""
    with branch.transaction() as t:
        t.make_dirs("u/r/commit/u/status/u")
        t.create_file("u/r/commit/u/status/u/u", b"x")
        t.commit("junk")
    head = branch.head()
    assert head is not None
    tree = head.tree()
    scope = layout.repo_dirs(tree)
    assert Commit(R, "u") in layout.read_snapshot(tree, scope).commits
    changes = layout.changed_ids(None, head)
    assert layout.refresh(tree, Snapshot(), changes.ids, scope) == layout.read_snapshot(tree, scope)


def test_readme_and_monitor(branch: Branch) -> None:
    assert layout.init_branch(branch)
    assert not layout.init_branch(branch)
    head = branch.head()
    assert head is not None
    assert head.message == "Initial commit\n"
    assert files(branch) == {"README.md": b"### DataKit -- GitHub bridge\n"}
    with branch.transaction() as t:
        layout.write_monitor(t, R)
        layout.write_monitor(t, Repo("u", "other"))
        t.commit("initial commit")
    head = branch.head()
    assert head is not None
    assert layout.monitored(head.tree()) == {R, Repo("u", "other")}
    assert layout.repo_dirs(head.tree()) == {R, Repo("u", "other")}


def garbage(t: Transaction) -> None:
    """What careless clients might commit into the branch."""
    t.make_dirs("u/r/pr/abc")
    t.create_file("u/r/pr/abc/head", A.encode())
    t.make_dirs("u/r/pr/007")
    t.create_file("u/r/pr/007/head", A.encode())
    t.create_file("u/r/pr/5", b"a file, not a directory")
    for n, fields in {
        4: {"head": A, "state": "open"},  # no owner: ignored
        6: {"head": f"  {B}\n\n", "state": " open\t\n", "owner": "dan"},  # no base, no title
        8: {"head": C, "state": "merged", "owner": "eve", "title": "  Spaced  \n"},
        9: {"state": "open", "owner": "x"},  # no head
    }.items():
        t.make_dirs(f"u/r/pr/{n}")
        for name, value in fields.items():
            t.create_file(f"u/r/pr/{n}/{name}", value.encode())
    t.make_dirs("u/r/pr/6/comments/x")
    t.make_dirs("u/r/pr/6/comments/1")
    t.create_file("u/r/pr/6/comments/1/id", b"nope\n")
    t.make_dirs("u/r/pr/10/head")  # head is a directory
    t.create_file("u/r/pr/10/state", b"open\n")
    t.create_file("u/r/pr/10/owner", b"o\n")
    t.make_dirs("u/r/pr/11")
    t.create_symlink("u/r/pr/11/head", "../6/head")
    t.create_file("u/r/pr/11/state", b"open\n")
    t.create_file("u/r/pr/11/owner", b"o\n")
    t.make_dirs(f"u/r/commit/{A}/status/ci/odd")
    t.create_file(f"u/r/commit/{A}/status/ci/odd/state", b"exploded\n")
    t.create_file(f"u/r/commit/{A}/status/loose", b"a file right under status/")
    t.create_file(f"u/r/commit/{D}", b"a file, not a directory")
    t.make_dirs("u/r/ref/heads/empty")
    t.create_file("u/r/ref/heads/empty/head", b"  \n")
    t.create_file("u/r/ref/head", A.encode())  # a ref with no name
    t.make_dirs("u/r/ref/heads/head/x")  # a branch called head/x
    t.create_file("u/r/ref/heads/head/x/head", B.encode())
    t.make_dirs("x/.monitor")  # .monitor as a directory of a repo "x/.monitor"? no: invalid
    t.make_dirs("bad name/r")
    t.create_file("bad name/r/.monitor", b"")
    t.create_file("u/r/.monitor", b"whatever")


def test_tolerant_reader(branch: Branch, caplog: pytest.LogCaptureFixture) -> None:
    with branch.transaction() as t:
        garbage(t)
        t.commit("garbage")
    head = branch.head()
    assert head is not None
    layout._complained.clear()  # each junk file is reported once per process
    with caplog.at_level(logging.INFO, logger="datakit.github"):
        snap = layout.read_snapshot(head.tree())
        assert layout.read_snapshot(head.tree()) == snap
        marks = layout.dirty(head.tree())
        layout.changed_ids(None, head)
    assert marks == frozenset()
    assert snap.repos == {R}
    assert {(p.number, p.state, p.title, p.base, p.owner, p.head) for p in snap.prs} == {
        (6, PRState.OPEN, "", "master", "dan", B),
        (8, PRState.CLOSED, "Spaced", "master", "eve", C),
    }
    assert snap.pr(PRId(R, 6)).comments == ()  # type: ignore[union-attr]
    assert snap.refs == {Ref(R, ("heads", "head", "x"), B)}
    assert snap.statuses == {Status(R, A, ("ci", "odd"), StatusState.FAILURE)}
    text = caplog.text
    assert "u/r/pr/abc: not a PR number; skipped" in text
    assert "u/r/pr/007: not a PR number" in text
    assert "'merged' is not a PR state; read as closed" in text
    assert "'exploded' is not a status state; read as failure" in text
    assert text.count("u/r/pr/abc: not a PR number") == 1  # not at every read

    # The writer copes with the junk too: it replaces what is in its way.
    new = full().with_elements(snap.prs)
    with branch.transaction() as t:
        summary = layout.write(t, snap, new)
        t.commit(layout.commit_message(summary))
    head = branch.head()
    assert head is not None
    assert layout.read_snapshot(head.tree()) == new


def test_writer_replaces_files_in_the_way(branch: Branch) -> None:
    with branch.transaction() as t:
        t.make_dirs("u/r")
        t.create_file("u/r/pr", b"junk")
        t.make_dirs("u/r/ref/heads/master/head")
        t.create_file("u/r/ref/heads/master/head/x", b"")
        t.commit("junk")
    commit_write(branch, Snapshot(), full())
    head = branch.head()
    assert head is not None
    assert layout.read_snapshot(head.tree(), [R]) == full()


@pytest.mark.parametrize("field", ["state", "description", "target_url"])
def test_contexts_that_would_collide_are_skipped_not_flipped(branch: Branch, field: str) -> None:
    """Contexts `ci` and `ci/<field>` need status/ci/<field> to be a file and
    a directory at once: writing both must settle (the longer one skipped),
    not flip between them and commit on every step."""
    short = Status(R, C, ("ci",), StatusState.SUCCESS, None, None)
    long = Status(R, C, ("ci", field), StatusState.PENDING, None, None)
    wanted = Snapshot.of([Ref(R, ("heads", "master"), C), short, long])
    commit_write(branch, Snapshot(), wanted)
    head = branch.head()
    assert head is not None
    stored = layout.read_snapshot(head.tree(), {R})
    assert short in stored.statuses and long not in stored.statuses
    # The next step (the branch read back, the same wish) changes nothing.
    assert layout.is_empty(commit_write(branch, stored, wanted))
    assert branch.head() == head


def test_a_dirty_symlink_is_junk_when_following_too(branch: Branch) -> None:
    """Another hypothesis find: a full read counts a ``.dirty`` marker only
    as a file; following the branch must not count a symlink of that name."""
    layout.init_branch(branch)
    first = branch.head()
    with branch.transaction() as t:
        t.make_dirs("u/r")
        t.create_symlink("u/r/.dirty", "../.dirty")
        t.commit("junk")
    head = branch.head()
    assert head is not None
    assert layout.view(head).dirty == frozenset()
    assert layout.view(head, layout.view(first)) == layout.view(head)

