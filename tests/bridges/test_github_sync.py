"""The GitHub bridge's reconciliation step (datakit/bridges/github/sync.py),
driven directly: GitHub is an in-memory implementation of the step's API
Protocol, the branch a Git repository opened with the client (no server).

The scenario tests (test_br_*) run the whole bridge against the fake
GitHub; these pin the step's rules one by one, where a failure says which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from datakit.bridges.github.sync import APIError, Sync, Trigger, Webhook
from datakit.client import Branch, Connection, connect
from datakit.github import tree as layout
from datakit.github.capabilities import Capabilities
from datakit.github.model import (
    PR,
    Comment,
    Event,
    PRState,
    PRUpdated,
    Ref,
    RefId,
    RefRemoved,
    RefUpdated,
    Repo,
    Snapshot,
    Status,
    StatusState,
    StatusUpdated,
)

R = Repo("u", "r")
C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40
A = "a" * 40


class MemoryGitHub:
    """GitHub as a snapshot; every call is logged; calls can be made to fail."""

    def __init__(self, state: Snapshot) -> None:
        self.state = state
        self.calls: list[tuple[str, object]] = []
        self.failing: set[str] = set()
        self.during: dict[str, Callable[[], None]] = {}
        self.unchanged = False  # import_repo answers "304"

    def _call(self, name: str, arg: object) -> None:
        self.calls.append((name, arg))
        if name in self.during:
            self.during.pop(name)()
        if name in self.failing:
            raise APIError(f"{name}: 502 Bad Gateway")

    def writes(self) -> list[tuple[str, object]]:
        return [c for c in self.calls if c[0] in ("set_status", "set_pr")]

    async def import_repo(self, repo: Repo, *, if_changed: bool = True) -> Snapshot | None:
        self._call("import_repo", repo)
        if self.unchanged and if_changed:
            return None
        return self.state.of_repo(repo).prune()

    async def pr(self, repo: Repo, number: int) -> PR | None:
        self._call("pr", (repo, number))
        for pr in self.state.prs:
            if pr.repo == repo and pr.number == number and pr.state is PRState.OPEN:
                return pr
        return None

    async def ref(self, repo: Repo, name: tuple[str, ...]) -> Ref | None:
        self._call("ref", (repo, name))
        return self.state.ref(RefId(repo, name))

    async def statuses(self, repo: Repo, sha: str) -> Sequence[Status]:
        self._call("statuses", (repo, sha))
        return [s for s in self.state.statuses if s.repo == repo and s.commit == sha]

    async def with_comments(self, pr: PR) -> PR:
        self._call("with_comments", pr.id)
        known = self.state.pr(pr.id)
        return replace(pr, comments=known.comments) if known else pr

    async def set_status(self, status: Status) -> None:
        self._call("set_status", status)
        self.state = self.state.with_elements([status])

    async def set_pr(self, pr: PR) -> PR:
        self._call("set_pr", pr)
        known = self.state.pr(pr.id)
        if known is None:
            raise APIError("404 Not Found")
        new = replace(known, title=pr.title, state=pr.state, base=pr.base)
        self.state = self.state.with_elements([new])
        return new

    async def ensure_hook(self, repo: Repo, url: str, secret: str) -> None:
        self._call("ensure_hook", (repo, url, secret))


def github() -> MemoryGitHub:
    return MemoryGitHub(
        Snapshot.of(
            [
                PR(R, 3, A, PRState.OPEN, "Fix", "master", "alice",
                   (Comment(0, "alice", "why"), Comment(7, "bob", "ok"))),
                Ref(R, ("heads", "master"), C1),
                Ref(R, ("tags", "v1"), C2),
                Status(R, C1, ("ci", "circleci"), StatusState.SUCCESS, None, "http://c/1"),
            ]
        )
    )


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    with connect(tmp_path / "meta", author="test") as c:
        yield c


@pytest.fixture
def branch(conn: Connection) -> Branch:
    b = conn.branch("github-metadata")
    with b.transaction() as t:
        layout.write_readme(t)
        layout.write_monitor(t, R)
        t.commit("initial commit")
    return b


def files(branch: Branch, under: str = "u/r") -> dict[str, bytes]:
    head = branch.head()
    assert head is not None
    tree = head.tree()
    out: dict[str, bytes] = {}

    def walk(path: str) -> None:
        for name in tree.read_dir(path):
            child = f"{path}/{name}"
            if tree.exists_dir(child):
                walk(child)
            else:
                out[child.removeprefix(under + "/")] = tree.read_file(child)

    walk(under)
    return out


def client_commit(branch: Branch, writes: dict[str, bytes | None], message: str = "client") -> None:
    with branch.transaction() as t:
        for path, data in writes.items():
            if data is None:
                t.remove(path)
            else:
                if "/" in path:
                    t.make_dirs(path.rsplit("/", 1)[0])
                t.create_or_replace_file(path, data)
        t.commit(message)


def caps(text: str = "*:rw") -> Capabilities:
    return Capabilities.parse(text)


async def synced(branch: Branch, gh: MemoryGitHub, text: str = "*:rw") -> Sync:
    sync = Sync(gh, branch, caps(text), errors=(APIError,))
    await sync.step()
    return sync


async def test_first_step_imports_into_one_commit_and_the_next_does_nothing(
    branch: Branch,
) -> None:
    gh = github()
    sync = Sync(gh, branch, caps(), errors=(APIError,))
    outcome = await sync.step()
    assert outcome.committed is not None
    got = files(branch)
    assert got["pr/3/head"] == A.encode() + b"\n"
    assert got["pr/3/comments/1/body"] == b"ok"
    assert got["ref/heads/master/head"] == C1.encode() + b"\n"
    assert got["ref/tags/v1/head"] == C2.encode() + b"\n"
    assert got["commit/" + C1 + "/status/ci/circleci/state"] == b"success\n"
    head = branch.head()
    again = await sync.step(Trigger(head=True))
    assert again.committed is None and branch.head() == head
    resync = await sync.step(Trigger(resync=True))
    assert resync.committed is None and branch.head() == head
    assert gh.writes() == []


async def test_a_status_written_by_a_client_is_sent_once_and_not_rewritten(
    branch: Branch,
) -> None:
    gh = github()
    sync = await synced(branch, gh)
    base = f"u/r/commit/{C1}/status/ci/datakit/test"
    client_commit(
        branch,
        {f"{base}/state": b"pending\n", f"{base}/description": b"Running\n",
         f"{base}/target_url": b"http://ci/x\n"},
    )
    head = branch.head()
    outcome = await sync.step(Trigger(head=True))
    assert gh.writes() == [
        ("set_status",
         Status(R, C1, ("ci", "datakit", "test"), StatusState.PENDING, "Running", "http://ci/x"))
    ]
    assert outcome.committed is None and branch.head() == head
    await sync.step(Trigger(head=True))
    assert len(gh.writes()) == 1


async def test_a_pr_edit_is_sent_and_a_closed_pr_removed(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    client_commit(branch, {"u/r/pr/3/title": b"New\n"})
    await sync.step(Trigger(head=True))
    (call,) = gh.writes()
    assert call[0] == "set_pr"
    sent = call[1]
    assert isinstance(sent, PR)
    assert (sent.title, sent.state, sent.base) == ("New", PRState.OPEN, "master")
    client_commit(branch, {"u/r/pr/3/state": b"closed\n"})
    outcome = await sync.step(Trigger(head=True))
    assert gh.state.pr(sent.id) is not None and gh.state.pr(sent.id).state is PRState.CLOSED  # type: ignore[union-attr]
    assert outcome.committed is not None
    assert not any(p.startswith("pr/3/") for p in files(branch))


async def test_refs_are_read_only(branch: Branch, caplog: pytest.LogCaptureFixture) -> None:
    gh = github()
    sync = await synced(branch, gh)
    client_commit(branch, {"u/r/ref/heads/master/head": (C3 + "\n").encode()})
    with caplog.at_level(logging.WARNING):
        outcome = await sync.step(Trigger(head=True))
    assert gh.writes() == []
    assert outcome.committed is not None
    assert files(branch)["ref/heads/master/head"] == (C1 + "\n").encode()
    assert "read-only" in caplog.text


async def test_status_removals_are_not_sent_and_restored(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    client_commit(branch, {f"u/r/commit/{C1}/status/ci/circleci/state": None,
                           f"u/r/commit/{C1}/status/ci/circleci/target_url": None})
    await sync.step(Trigger(head=True))
    assert gh.writes() == []
    assert files(branch)[f"commit/{C1}/status/ci/circleci/state"] == b"success\n"


async def test_a_failed_push_keeps_the_clients_value_and_is_retried(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    path = f"u/r/commit/{C1}/status/ci/datakit/state"
    gh.failing.add("set_status")
    client_commit(branch, {path: b"success\n"})
    outcome = await sync.step(Trigger(head=True))
    assert outcome.failed
    assert files(branch)[f"commit/{C1}/status/ci/datakit/state"] == b"success\n"
    gh.failing.clear()
    outcome = await sync.step(Trigger())
    assert not outcome.failed
    assert [c[0] for c in gh.writes()] == ["set_status", "set_status"]
    assert gh.state.status(Status(R, C1, ("ci", "datakit"), StatusState.SUCCESS).id) is not None
    await sync.step(Trigger())
    assert len(gh.writes()) == 2


async def test_capabilities_filter_what_is_sent(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh, "*:r,status[ci/datakit]:x")
    base = f"u/r/commit/{C1}/status"
    client_commit(branch, {f"{base}/ci/datakit/a/state": b"success\n",
                           f"{base}/other/b/state": b"failure\n"})
    await sync.step(Trigger(head=True))
    assert [c[1].context for c in gh.writes()] == [("ci", "datakit", "a")]  # type: ignore[attr-defined]
    got = files(branch)
    assert f"commit/{C1}/status/other/b/state" not in got
    assert got[f"commit/{C1}/status/ci/datakit/a/state"] == b"success\n"


@pytest.mark.parametrize(("text", "datakit_wins"), [("*:r,status[ci/datakit]:x", True),
                                                     ("*:rw", False)])
async def test_exclusive_first_sync(branch: Branch, text: str, datakit_wins: bool) -> None:
    gh = github()
    gh.state = gh.state.with_elements(
        [Status(R, C1, ("ci", "datakit", "a"), StatusState.FAILURE)]
    )
    client_commit(branch, {f"u/r/commit/{C1}/status/ci/datakit/a/state": b"success\n"})
    await synced(branch, gh, text)
    state = files(branch)[f"commit/{C1}/status/ci/datakit/a/state"]
    if datakit_wins:
        assert [c[0] for c in gh.writes()] == ["set_status"]
        assert state == b"success\n"
    else:
        assert gh.writes() == []
        assert state == b"failure\n"


async def test_webhook_events(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    pr = PR(R, 4, C3, PRState.OPEN, "New PR", "master", "carol", (Comment(0, "carol", "body"),))
    gh.state = gh.state.with_elements(
        [replace(pr, comments=(Comment(0, "carol", "body"), Comment(9, "dan", "+1"))),
         Status(R, C3, ("ci",), StatusState.PENDING)]
    )
    await sync.step(Trigger(events=[PRUpdated(pr), RefRemoved(RefId(R, ("tags", "v1"))),
                                    RefUpdated(Ref(R, ("heads", "master"), C2))]))
    got = files(branch)
    assert got["pr/4/comments/1/body"] == b"+1"
    assert got[f"commit/{C3}/status/ci/state"] == b"pending\n"
    assert "ref/tags/v1/head" not in got
    assert got["ref/heads/master/head"] == (C2 + "\n").encode()
    assert not any(k.startswith(f"commit/{C1}") for k in got)  # no longer a head
    closed = replace(pr, state=PRState.CLOSED)
    await sync.step(Trigger(events=[PRUpdated(closed)]))
    assert not any(k.startswith("pr/4") for k in files(branch))
    await sync.step(Trigger(events=[StatusUpdated(Status(R, C2, ("x",), StatusState.ERROR))]))
    assert files(branch)[f"commit/{C2}/status/x/state"] == b"error\n"
    assert gh.writes() == []


async def test_events_for_unmonitored_repositories_are_ignored(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    head = branch.head()
    other = Repo("o", "x")
    await sync.step(Trigger(events=[RefUpdated(Ref(other, ("heads", "master"), C2))]))
    assert branch.head() == head


async def test_dirty_markers_reimport_and_are_removed(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    old = gh.state.pr(PR(R, 3, A, PRState.OPEN, "").id)
    assert old is not None
    gh.state = gh.state.with_elements([replace(old, title="Changed quietly")])
    client_commit(branch, {"u/r/pr/3/.dirty": b""})
    await sync.step(Trigger(head=True))
    got = files(branch)
    assert got["pr/3/title"] == b"Changed quietly\n"
    assert "pr/3/.dirty" not in got
    gh.state = gh.state.with_elements([Ref(R, ("heads", "master"), C3)])
    client_commit(branch, {"u/r/ref/heads/master/.dirty": b""})
    await sync.step(Trigger(head=True))
    got = files(branch)
    assert got["ref/heads/master/head"] == (C3 + "\n").encode()
    assert "ref/heads/master/.dirty" not in got
    gh.state = gh.state.with_elements([Ref(R, ("heads", "dev"), C2)])
    client_commit(branch, {"u/r/.dirty": b""})
    await sync.step(Trigger(head=True))
    got = files(branch)
    assert got["ref/heads/dev/head"] == (C2 + "\n").encode()
    assert ".dirty" not in got
    assert gh.writes() == []


async def test_a_dirty_marker_alone_makes_a_cleanup_commit(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    client_commit(branch, {"u/r/pr/3/.dirty": b""})
    outcome = await sync.step(Trigger(head=True))
    assert outcome.message == layout.CLEANUP_MESSAGE


async def test_a_new_monitor_imports_the_repository_and_registers_its_hook(
    branch: Branch,
) -> None:
    gh = github()
    other = Repo("o", "x")
    gh.state = gh.state.with_elements([Ref(other, ("heads", "main"), C3)])
    sync = Sync(gh, branch, caps(), errors=(APIError,), webhook=Webhook("http://h/", "s"))
    await sync.step()
    client_commit(branch, {"o/x/.monitor": b""})
    await sync.step(Trigger(head=True))
    assert files(branch, "o/x")["ref/heads/main/head"] == (C3 + "\n").encode()
    hooks = [c[1] for c in gh.calls if c[0] == "ensure_hook"]
    assert hooks == [(R, "http://h/", "s"), (other, "http://h/", "s")]


async def test_a_failed_import_is_tried_again(branch: Branch) -> None:
    gh = github()
    gh.failing.add("import_repo")
    sync = Sync(gh, branch, caps(), errors=(APIError,))
    outcome = await sync.step()
    assert outcome.failed and outcome.committed is None
    gh.failing.clear()
    await sync.step()
    assert "pr/3/head" in files(branch)


async def test_a_conflicting_concurrent_commit_is_retried(branch: Branch) -> None:
    """The branch moves during the step with a change to a file the bridge
    writes: the automatic merge conflicts, the step starts over on the new
    head, and nothing from either side is lost."""
    gh = github()
    sync = await synced(branch, gh)
    gh.state = gh.state.with_elements([Ref(R, ("heads", "master"), C3)])

    def concurrent() -> None:
        client_commit(branch, {"u/r/ref/heads/master/head": (C2 + "\n").encode(),
                               "notes/unrelated": b"keep me\n"})

    gh.during["import_repo"] = concurrent
    outcome = await sync.step(Trigger(resync=True))
    assert outcome.committed is not None and not outcome.gave_up
    head = branch.head()
    assert head is not None
    assert head.tree().read_file("notes/unrelated") == b"keep me\n"
    assert files(branch)["ref/heads/master/head"] == (C3 + "\n").encode()


async def test_an_unrelated_concurrent_commit_is_merged(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    path = f"u/r/commit/{C1}/status/ci/datakit/state"

    def concurrent() -> None:
        client_commit(branch, {"notes/unrelated": b"keep me\n"})

    gh.during["set_status"] = concurrent
    client_commit(branch, {path: b"success\n", f"u/r/commit/{C1}/status/ci/circleci/state": None})
    await sync.step(Trigger(head=True))
    head = branch.head()
    assert head is not None and len(head.parents) == 2
    assert head.tree().read_file("notes/unrelated") == b"keep me\n"
    assert files(branch)[f"commit/{C1}/status/ci/circleci/state"] == b"success\n"
    # the bridge's own commit is not taken for a client change: after GitHub
    # changes the status, nothing is sent back
    changed = Status(R, C1, ("ci", "circleci"), StatusState.FAILURE, None, "http://c/1")
    await sync.step(Trigger(events=[StatusUpdated(changed)]))
    await sync.step(Trigger(head=True))
    assert [c[0] for c in gh.writes()] == ["set_status"]
    assert files(branch)[f"commit/{C1}/status/ci/circleci/state"] == b"failure\n"


async def test_import_unchanged_keeps_the_bridge_snapshot(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    head = branch.head()
    gh.unchanged = True
    outcome = await sync.step(Trigger(poll=True))
    assert outcome.committed is None and branch.head() == head


async def test_unreadable_resources_are_not_imported(branch: Branch) -> None:
    gh = github()
    await synced(branch, gh, "*:w,pr:r")
    got = files(branch)
    assert "pr/3/head" in got
    assert not any(k.startswith("ref/") or k.startswith("commit/") for k in got)


async def test_junk_written_by_clients_neither_crashes_nor_loops(branch: Branch) -> None:
    gh = github()
    sync = await synced(branch, gh)
    client_commit(
        branch,
        {
            "u/r/pr/abc/head": b"not a PR number\n",
            "u/r/pr/007/state": b"open\n",
            "u/r/pr/3/state": b"merged-ish\n",  # unknown state: read as closed
            f"u/r/commit/{C1}/status/ci/odd/state": b"sideways\n",  # read as failure
            "u/r/ref/heads/master/head": None,
            "u/r/ref/heads/master/head/x": b"a directory where a file goes\n",
            "u/r/commit/nothex/status/x/state": b"success\n",
            "junk": b"at the root\n",
        },
    )
    first = await sync.step(Trigger(head=True))
    assert not first.failed and not first.gave_up
    got = files(branch)
    # an unknown state reads as closed (spec §1.2), and a client closing a PR is sent
    assert "pr/3/state" not in got
    sent = {(c[0], str(c[1].state)) for c in gh.writes()}  # type: ignore[attr-defined]
    assert ("set_pr", "closed") in sent
    # an unknown status state reads as failure, and is sent as such
    assert ("set_status", "failure") in sent
    # (the file is left alone: it already reads as what GitHub now holds)
    assert got[f"commit/{C1}/status/ci/odd/state"] == b"sideways\n"
    assert not any("nothex" in k for k in got)  # not the head of anything: pruned
    assert got["ref/heads/master/head"] == (C1 + "\n").encode()
    head = branch.head()
    again = await sync.step(Trigger(head=True))
    assert again.committed is None and branch.head() == head


async def test_a_failed_hook_registration_is_tried_again(branch: Branch) -> None:
    gh = github()
    gh.failing.add("ensure_hook")
    sync = Sync(gh, branch, caps(), errors=(APIError,), webhook=Webhook("http://h/", "s"))
    outcome = await sync.step()
    assert outcome.failed
    gh.failing.clear()
    outcome = await sync.step()
    assert not outcome.failed
    await sync.step()
    assert [c[0] for c in gh.calls].count("ensure_hook") == 2


async def test_exclusive_first_sync_survives_a_failed_first_import(branch: Branch) -> None:
    """The first sync of a repository is the step that imports it: when the
    first import fails, the retry still lets DataKit win for `x` resources."""
    gh = github()
    gh.state = gh.state.with_elements(
        [Status(R, C1, ("ci", "datakit", "a"), StatusState.FAILURE)]
    )
    client_commit(branch, {f"u/r/commit/{C1}/status/ci/datakit/a/state": b"success\n"})
    sync = Sync(gh, branch, caps("*:r,status[ci/datakit]:x"), errors=(APIError,))
    gh.failing.add("import_repo")
    assert (await sync.step()).failed
    gh.failing.discard("import_repo")
    await sync.step(Trigger())
    assert [w[1].state for w in gh.writes()] == [StatusState.SUCCESS]
    assert files(branch)[f"commit/{C1}/status/ci/datakit/a/state"] == b"success\n"


class _BusyBranch:
    """The branch, with two client commits landing right after the bridge's
    own commit and before the bridge reads the head back."""

    def __init__(self, branch: Branch) -> None:
        self.branch, self.armed, self.name = branch, False, branch.name

    def transaction(self):  # type: ignore[no-untyped-def]
        return self.branch.transaction()

    def head(self):  # type: ignore[no-untyped-def]
        if self.armed:
            self.armed = False
            client_commit(self.branch, {"notes/a": b"1"}, "client 1")
            client_commit(self.branch, {"notes/b": b"2"}, "client 2")
        return self.branch.head()

    def __getattr__(self, name: str) -> object:
        return getattr(self.branch, name)


async def test_the_bridges_own_commit_is_found_under_later_client_commits(
    branch: Branch,
) -> None:
    """Otherwise its own writes read as client changes next step, and a value
    GitHub has since replaced (another CI finished) is sent back."""
    gh = github()
    busy = _BusyBranch(branch)
    sync = Sync(gh, busy, caps(), errors=(APIError,))  # type: ignore[arg-type]
    await sync.step()

    def other(state: StatusState) -> Status:
        return Status(R, C1, ("ci", "other"), state)

    gh.state = gh.state.with_elements([other(StatusState.PENDING)])
    busy.armed = True
    await sync.step(Trigger(events=[StatusUpdated(other(StatusState.PENDING))]))
    gh.state = gh.state.with_elements([other(StatusState.SUCCESS)])
    await sync.step(Trigger(events=[StatusUpdated(other(StatusState.SUCCESS))]))
    assert gh.writes() == []


async def test_events_about_commits_nobody_follows_do_not_pile_up(branch: Branch) -> None:
    gh = github()
    sync = Sync(gh, branch, caps(), errors=(APIError,))
    await sync.step()
    followed = len(sync.bridge.statuses)
    head = branch.head()
    for batch in range(5):
        events: list[Event] = [
            StatusUpdated(Status(R, f"{batch:04d}{i:036d}", ("ci",), StatusState.SUCCESS))
            for i in range(20)
        ]
        events.append(PRUpdated(PR(R, 1000 + batch, A, PRState.CLOSED, "t", "master", "x", ())))
        await sync.step(Trigger(events=events))
    assert branch.head() == head  # nothing about them was written
    assert len(sync.bridge.statuses) == followed
    assert not any(pr.number >= 1000 for pr in sync.bridge.prs)
