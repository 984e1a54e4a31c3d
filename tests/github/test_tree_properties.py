"""Properties of the layout on the Git backend (fast, no server):

* any snapshot written over any other reads back exactly (the writer's
  minimal updates and removals are right, nested refs and contexts
  included), and writing it again changes nothing;
* no tree a client can build makes the reader raise.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datakit.client import Connection, DataKitError, connect
from datakit.github import tree as layout
from datakit.github.model import (
    PR,
    Comment,
    PRId,
    PRState,
    Ref,
    RefId,
    Repo,
    Snapshot,
    Status,
    StatusState,
    repo_of,
)

REPOS = [Repo("u", "r"), Repo("u", "s"), Repo("v", "r")]
SHAS = ["a" * 40, "b" * 40, "c" * 40]
# Ref and context components the layout can hold unambiguously (a context
# component "state" would collide with the state file; Git itself forbids
# a ref that is both a file and a directory).
STEP = st.sampled_from(["ci", "x", "feature", "datakit", "v1", "a.b", "test-1"])
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)

comments = st.lists(
    st.builds(Comment, st.integers(0, 10**9), st.sampled_from(["al", "bo"]), TEXT), max_size=3
)
prs = st.builds(
    PR,
    st.sampled_from(REPOS),
    st.integers(0, 40),
    st.sampled_from(SHAS),
    st.sampled_from(PRState),
    TEXT,
    st.sampled_from(["master", "dev"]),
    st.sampled_from(["alice", "bob"]),
    comments.map(tuple),
)
refs = st.builds(
    Ref,
    st.sampled_from(REPOS),
    st.tuples(st.sampled_from(["heads", "tags"]), STEP).flatmap(
        lambda t: st.lists(STEP, max_size=2).map(lambda rest: (*t, *rest))
    ),
    st.sampled_from(SHAS),
)
statuses = st.builds(
    Status,
    st.sampled_from(REPOS),
    st.sampled_from(SHAS),
    st.lists(STEP, min_size=1, max_size=3).map(tuple),
    st.sampled_from(StatusState),
    st.none() | TEXT,
    st.none() | st.sampled_from(["http://ci/1", "https://x.example/y?z=1"]),
)
snapshots = st.lists(prs | refs | statuses, max_size=12).map(Snapshot.of)

MARKS = [
    REPOS[0],
    PRId(REPOS[0], 3),
    RefId(REPOS[1], ("heads", "x")),
    RefId(REPOS[0], ("tags", "v1")),
]

_count = itertools.count()


def _conn(tmp: Path) -> Connection:
    return connect(tmp / "meta.git")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    old=snapshots,
    new=snapshots,
    watched=st.lists(st.sets(st.sampled_from(REPOS)), min_size=2, max_size=2),
    marked=st.lists(st.sets(st.sampled_from(MARKS)), min_size=2, max_size=2),
)
def test_any_snapshot_over_any_other_reads_back(
    tmp_path: Path,
    old: Snapshot,
    new: Snapshot,
    watched: list[set[Repo]],
    marked: list[set[Repo | PRId | RefId]],
) -> None:
    with _conn(tmp_path) as conn:
        branch = conn.branch(f"b{next(_count)}")
        heads = []
        steps = zip(((Snapshot(), old), (old, new)), watched, marked, strict=True)
        for (before, after), monitors, marks in steps:
            with branch.transaction() as t:
                summary = layout.write(t, before, after, clean=MARKS)
                for mark in marks:
                    layout.mark_dirty(t, mark)
                for repo in REPOS:
                    if repo in monitors:
                        layout.write_monitor(t, repo)
                    elif t.exists(layout.monitor_file(repo)):
                        t.remove(layout.monitor_file(repo))
                t.commit(layout.commit_message(summary))
            head = branch.head()
            assert head is not None
            heads.append(head)
            got = layout.read_snapshot(head.tree(), REPOS)
            assert got == Snapshot.of([*after.elements(), *REPOS])
            assert layout.read_snapshot(head.tree()) == Snapshot.of(
                [*(e for e in after.elements() if repo_of(e) in monitors), *monitors]
            )
        with branch.transaction() as t:
            assert layout.is_empty(layout.write(t, new, new))
        # Following the branch incrementally gives what a full read gives.
        first, second = heads
        changes = layout.changed_ids(first, second)
        followed = layout.refresh(second.tree(), layout.read_snapshot(first.tree()), changes.ids)
        assert followed == layout.read_snapshot(second.tree())
        full = layout.view(second)
        assert layout.view(second, layout.view(first)) == full
        assert full.dirty == marked[1]
        assert full.monitored == watched[1]


names = st.sampled_from(
    [
        "u",
        "r",
        "pr",
        "ref",
        "commit",
        "status",
        "head",
        "state",
        "owner",
        "title",
        "base",
        "comments",
        "0",
        "1",
        "03",
        "x",
        ".dirty",
        ".monitor",
        "heads",
        "description",
        "a" * 40,
    ]
)
entries = st.lists(
    st.tuples(
        st.lists(names, min_size=1, max_size=8),
        st.sampled_from(["file", "dir", "link", "exec"]),
        st.binary(max_size=50) | st.sampled_from([b"open\n", b"a" * 40 + b"\n", b"7\n"]),
    ),
    max_size=25,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(entries=entries)
def test_no_tree_makes_the_reader_raise(tmp_path: Path, entries: list) -> None:  # type: ignore[type-arg]
    with _conn(tmp_path) as conn:
        branch = conn.branch(f"g{next(_count)}")
        layout.init_branch(branch)
        first = branch.head()
        with branch.transaction() as t:
            for path, kind, data in entries:
                try:
                    t.make_dirs(path[:-1])
                    if kind == "dir":
                        t.make_dirs(path)
                    elif kind == "link":
                        t.create_symlink(path, "../" + path[-1])
                    else:
                        t.create_file(path, data, executable=kind == "exec")
                except DataKitError:
                    pass  # something else is in the way: fine, it is junk anyway
            t.commit("junk")
        head = branch.head()
        assert head is not None
        tree = head.tree()
        snap = layout.read_snapshot(tree, layout.repo_dirs(tree))
        layout.dirty(tree)
        layout.monitored(tree)
        changes = layout.changed_ids(None, head)
        scope = layout.repo_dirs(tree)
        assert layout.refresh(tree, Snapshot(), changes.ids, scope) == snap
        assert layout.refresh(tree, Snapshot(), changes.ids) == layout.read_snapshot(tree)
        assert layout.view(head, layout.view(first)) == layout.view(head)
        # And the writer can always bring it to a clean state.
        with branch.transaction() as t:
            layout.write(t, snap, Snapshot())
            assert layout.read_snapshot(t, layout.repo_dirs(t)).prs == frozenset()
