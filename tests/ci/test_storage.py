"""Storage in DataKit (spec ci.md A.3, A.4, B.5), against a real server (9p)
and the Git backend: result branches, history, commit-index, statuses in
the bridges' layout, monitors; junk in any of them reads as nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.ci import naming, storage
from datakit.ci.model import JobSpec, RunResult, Summary
from datakit.ci.storage import JobOutput
from datakit.client import Conflict, Connection, Transaction, connect
from datakit.github import tree as gh
from datakit.github.model import PRId, RefId, Repo, Status, StatusState
from tests.gitrepo import git
from tests.operations.procs import datakit_process
from tests.serverthread import running_server

ME_P = Repo("me", "p")
MASTER = RefId(ME_P, ("heads", "master"))
SHA1 = "1" * 40
SHA2 = "2" * 40
JOB = JobSpec(name="test", run=("true",))
BRANCH = naming.result_branch(JOB, SHA1)


@pytest.fixture(params=["9p", "git"])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Connection]:
    """A real `datakit serve` over a Unix socket, or the Git backend."""
    if request.param == "9p":
        with running_server(tmp_path) as address, connect(address, timeout=30) as c:
            yield c
    else:
        with connect(tmp_path / "store.git") as c:
            yield c


def _messages(conn: Connection, branch: str) -> list[str]:
    head = conn.branch(branch).head()
    out = []
    while head is not None:
        out.append(head.message.rstrip("\n"))
        head = head.parents[0] if head.parents else None
    return out


def _junk(conn: Connection, branch: str, fill: object, message: str = "junk") -> str:
    b = conn.branch(branch)
    with b.transaction() as tx:
        fill(tx)  # type: ignore[operator]
        tx.commit(message)
    head = b.head()
    assert head is not None
    return head.id


PASSED = RunResult("test passed", None, 0, 1.5, b"ok\n\x1b[32mgreen\x1b[0m\n")
FAILED = RunResult("test failed: exit 3", "exit 3", 3, 0.25, b"boom\n")


# --- result branches ---------------------------------------------------------------


def test_write_and_read_success(conn: Connection) -> None:
    assert storage.read_run(conn, BRANCH) is None
    commit = storage.write_run(conn, BRANCH, PASSED)
    head = conn.branch(BRANCH).head()
    assert head is not None and head.id == commit
    assert head.message == "Cached successful result\n"
    tree = head.tree()
    assert sorted(tree.read_dir("")) == ["log", "value"]
    assert tree.read_file("log") == PASSED.log
    assert tree.read_file("value/exit-status") == b"0\n"
    assert sorted(tree.read_dir("value")) == ["description", "duration", "exit-status"]
    stored = storage.read_run(conn, BRANCH)
    assert stored == storage.StoredRun(PASSED, False, commit)
    light = storage.read_run(conn, BRANCH, with_log=False)
    assert light is not None and light.result is not None and light.result.log == b""


def test_write_and_read_failure(conn: Connection) -> None:
    commit = storage.write_run(conn, BRANCH, FAILED)
    head = conn.commit(commit)
    assert head.message == "Cached failure: exit 3\n"
    assert head.tree().read_file("failure") == b"exit 3"
    stored = storage.read_run(conn, BRANCH)
    assert stored is not None and stored.result == FAILED
    # A later success replaces the failure file.
    storage.write_run(conn, BRANCH, PASSED)
    again = storage.read_run(conn, BRANCH)
    assert again is not None and again.result == PASSED
    assert not conn.branch(BRANCH).head().tree().exists("failure")  # type: ignore[union-attr]


def test_exit_status_none_and_same_result_twice(conn: Connection) -> None:
    timed_out = RunResult("timed out after 2 s", "timed out after 2 s", None, 2.0, b"")
    first = storage.write_run(conn, BRANCH, timed_out)
    assert storage.write_run(conn, BRANCH, timed_out) == first  # no empty commit
    stored = storage.read_run(conn, BRANCH)
    assert stored is not None and stored.result == timed_out
    assert _messages(conn, BRANCH) == ["Cached failure: timed out after 2 s"]


def test_rebuild_marker_round_trip(conn: Connection) -> None:
    assert storage.request_rebuild(conn, BRANCH) is False  # no such branch
    assert BRANCH not in conn.branches()  # and asking did not create it
    storage.write_run(conn, BRANCH, FAILED)
    assert storage.request_rebuild(conn, BRANCH) is True
    assert storage.request_rebuild(conn, BRANCH) is True  # once is enough
    stored = storage.read_run(conn, BRANCH)
    assert stored is not None and stored.rebuild_requested and stored.result == FAILED
    head = conn.branch(BRANCH).head()
    assert head is not None and head.tree().read_file("rebuild-requested") == b""
    storage.write_run(conn, BRANCH, PASSED)
    stored = storage.read_run(conn, BRANCH)
    assert stored is not None and not stored.rebuild_requested
    assert _messages(conn, BRANCH) == [
        "Cached successful result",
        "Marked for rebuild",
        "Cached failure: exit 3",
    ]
    assert storage.request_rebuild(conn, "not a branch name") is False


def test_upstream_result_without_value_files(conn: Connection) -> None:
    def upstream(tx: Transaction) -> None:
        tx.create_file("log", b"built\n")
        tx.create_file("failure", b"Docker build failed")
        tx.create_dir("value")

    _junk(conn, BRANCH, upstream, "Cached failure: Docker build failed")
    stored = storage.read_run(conn, BRANCH)
    assert stored is not None and stored.result is not None
    assert stored.result.failure == "Docker build failed"
    assert stored.result.description == "Docker build failed"
    assert stored.result.exit_status is None


@pytest.mark.parametrize(
    "junk",
    [
        {"log/x": b"a dir where log belongs"},
        {"log": b"x", "failure/x": b"a dir"},
        {"log": b"x", "value/duration": b"soon"},
        {"log": b"x", "value/exit-status": b"\xff"},
    ],
)
def test_junk_result_reads_as_no_result(
    conn: Connection, junk: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    def fill(tx: Transaction) -> None:
        for path, data in junk.items():
            if "/" in path:
                tx.make_dirs(path.rsplit("/", 1)[0])
            tx.create_file(path, data)

    commit = _junk(conn, BRANCH, fill)
    with caplog.at_level(logging.WARNING, "datakit.ci.storage"):
        stored = storage.read_run(conn, BRANCH)
    assert stored == storage.StoredRun(None, False, commit)
    assert "ignoring the stored result" in caplog.text
    # The run is then redone and overwrites the junk.
    storage.write_run(conn, BRANCH, PASSED)
    again = storage.read_run(conn, BRANCH)
    assert again is not None and again.result == PASSED


def test_only_a_marker_is_no_result(conn: Connection) -> None:
    commit = _junk(conn, BRANCH, lambda tx: tx.create_file("rebuild-requested", b""))
    assert storage.read_run(conn, BRANCH) == storage.StoredRun(None, True, commit)


def test_read_log_checks_branch_and_commit(conn: Connection) -> None:
    first = storage.write_run(conn, BRANCH, FAILED)
    storage.request_rebuild(conn, BRANCH)
    last = storage.write_run(conn, BRANCH, PASSED)
    assert storage.read_log(conn, BRANCH, last) == PASSED.log
    assert storage.read_log(conn, BRANCH, first) == FAILED.log  # an older result
    assert storage.read_log(conn, BRANCH, first.upper()) == FAILED.log
    other_branch = naming.result_branch(JOB, SHA2)
    other = storage.write_run(conn, other_branch, RunResult("x", "y", 1, 0.0, b"other\n"))
    assert storage.read_log(conn, BRANCH, other) is None  # not of this branch
    assert storage.read_log(conn, other_branch, last) is None
    assert storage.read_log(conn, BRANCH, "0" * 40) is None  # no such commit
    assert storage.read_log(conn, BRANCH, "../../etc/passwd") is None
    assert storage.read_log(conn, BRANCH, "") is None
    assert storage.read_log(conn, "no-such-branch", last) is None
    assert storage.read_log(conn, "..", last) is None
    assert "no-such-branch" not in conn.branches()
    # A commit of the branch whose `log` is a directory: None, not an error.
    junk = _junk(conn, BRANCH, lambda tx: (tx.remove("log"), tx.make_dirs("log/x")))
    assert storage.read_log(conn, BRANCH, junk) is None


# --- history and commit-index -------------------------------------------------------


def _saved(branch: str, commit: str, failed: bool) -> dict[str, object]:
    return {"title": "test", "branch": branch, "commit": commit, "failed": failed}


def test_history_commits_and_json(conn: Connection) -> None:
    pending = {"ok": JobOutput("pending", "Running ok", {"branch": BRANCH})}
    first = storage.write_history(conn, MASTER, SHA1, "a" * 40, pending, Summary.PENDING)
    assert first is not None
    branch = "status-me-p-ref-heads-master"
    head = conn.branch(branch).head()
    assert head is not None and head.id == first
    assert head.message == "ok -> Running ok\n"
    tree = head.tree()
    assert tree.read_file("source-commit") == SHA1.encode()
    assert tree.read_file("metadata-commit") == b"a" * 40
    assert tree.read_file("summary") == b"pending"
    assert json.loads(tree.read_file("job/ok/output")) == {
        "result": {"status": "pending", "descr": "Running ok"},
        "logs": {"branch": BRANCH},
    }
    # Byte-exact upstream (Yojson.Basic.to_string): compact, keys in order.
    assert tree.read_file("job/ok/output") == (
        b'{"result":{"status":"pending","descr":"Running ok"},"logs":{"branch":"'
        + BRANCH.encode()
        + b'"}}'
    )

    # Same outputs, new metadata commit: nothing to record.
    assert storage.write_history(conn, MASTER, SHA1, "b" * 40, pending, Summary.PENDING) is None
    assert conn.branch(branch).head() == head

    done = {
        "ok": JobOutput("success", "ok passed", _saved(BRANCH, "c" * 40, False)),
        "lint": JobOutput("failure", "lint failed: exit 1", [{"branch": "x"}, None]),
    }
    second = storage.write_history(conn, MASTER, SHA1, "b" * 40, done, Summary.FAILURE)
    assert second is not None
    message = conn.commit(second).message
    assert message.startswith("2 updates (ok -> ok passed, ...)\n\n")
    assert "lint -> lint failed: exit 1" in message
    # A job that is gone is removed.
    third = storage.write_history(conn, MASTER, SHA2, None, {"ok": done["ok"]}, Summary.SUCCESS)
    assert third is not None
    assert conn.commit(third).message == "Remove old job lint\n"
    assert conn.commit(third).tree().read_dir("job") == ["ok"]
    assert conn.commit(third).tree().read_file("metadata-commit") == b"b" * 40
    # New source commit, same outputs: recorded ("Update", as upstream).
    fourth = storage.write_history(conn, MASTER, SHA1, None, {"ok": done["ok"]}, Summary.SUCCESS)
    assert fourth is not None and conn.commit(fourth).message == "Update\n"

    entries = storage.read_history(conn, MASTER, 10)
    assert [e.commit for e in entries] == [fourth, third, second, first]
    assert [e.source_commit for e in entries] == [SHA1, SHA2, SHA1, SHA1]
    assert entries[2].jobs == (
        ("lint", "failure", "lint failed: exit 1"),
        ("ok", "success", "ok passed"),
    )
    assert entries[2].summary is Summary.FAILURE
    assert [e.commit for e in storage.read_history(conn, MASTER, 2)] == [fourth, third]
    assert storage.read_history(conn, PRId(ME_P, 99), 10) == []


def test_commit_index(conn: Connection) -> None:
    out = {"ok": JobOutput("success", "ok passed", None)}
    pr = PRId(ME_P, 5)
    h_master = storage.write_history(conn, MASTER, SHA1, None, out, Summary.SUCCESS)
    h_pr = storage.write_history(conn, pr, SHA1, None, out, Summary.SUCCESS)
    assert h_master is not None and h_pr is not None
    index = conn.branch("commit-index").head()
    assert index is not None
    tree = index.tree()
    assert tree.read_file(f"me/p/commit/{SHA1}/ref-heads-master") == h_master.encode()
    assert tree.read_file(f"me/p/commit/{SHA1}/pr-5") == h_pr.encode()
    assert index.message == f"Update pr-5:{SHA1} -> {h_pr}\n"
    assert storage.builds_of_commit(conn, ME_P, SHA1) == [(pr, h_pr), (MASTER, h_master)]
    assert storage.builds_of_commit(conn, ME_P, SHA2) == []
    assert storage.builds_of_commit(conn, ME_P, "not-a-sha") == []
    assert storage.builds_of_commit(conn, Repo("x", "y"), SHA1) == []
    # The master target moves on; the archived build of SHA1 stays listed.
    storage.write_history(conn, MASTER, SHA2, None, out, Summary.SUCCESS)
    assert (MASTER, h_master) in storage.builds_of_commit(conn, ME_P, SHA1)


def test_hostile_history_and_index(conn: Connection, caplog: pytest.LogCaptureFixture) -> None:
    out = {"ok": JobOutput("success", "ok passed", None)}
    good = storage.write_history(conn, MASTER, SHA1, None, out, Summary.SUCCESS)
    branch = naming.history_branch(MASTER)

    def junk(tx: Transaction) -> None:
        tx.replace_file("job/ok/output", b"not json")
        tx.make_dirs("job/dir/output")
        tx.make_dirs("job/list")
        tx.create_file("job/list/output", b"[1, 2]")
        tx.replace_file("summary", b"purple")
        tx.make_dirs("job/deep")
        tx.create_file("job/deep/output", b"[" * 100_000 + b"]" * 100_000)

    bad = _junk(conn, branch, junk)
    no_source = _junk(conn, branch, lambda tx: tx.remove("source-commit"))
    with caplog.at_level(logging.WARNING, "datakit.ci.storage"):
        entries = storage.read_history(conn, MASTER, 10)
    assert [e.commit for e in entries] == [bad, good]
    assert entries[0].jobs == ()
    assert entries[0].summary is Summary.PENDING  # derived when the file is junk
    assert no_source in caplog.text and "skipped" in caplog.text
    # Writing over the junk repairs it.
    fixed = storage.write_history(conn, MASTER, SHA1, None, out, Summary.SUCCESS)
    assert fixed is not None
    assert storage.read_history(conn, MASTER, 1)[0].jobs == (("ok", "success", "ok passed"),)

    def index_junk(tx: Transaction) -> None:
        base = f"me/p/commit/{SHA1}"
        tx.create_file(f"{base}/pr-x", b"zz")
        tx.create_file(f"{base}/pr-7", b"not a commit id")
        tx.make_dirs(f"{base}/pr-8")

    _junk(conn, "commit-index", index_junk)
    with caplog.at_level(logging.WARNING, "datakit.ci.storage"):
        assert storage.builds_of_commit(conn, ME_P, SHA1) == [(MASTER, fixed)]


# --- github-metadata ---------------------------------------------------------------


def _status(sha: str, job: str, state: StatusState, descr: str) -> Status:
    url = naming.target_url("http://ci.example/", ME_P, sha, job)
    return Status(ME_P, sha, ("ci", "datakit", job), state, descr, url)


def test_write_statuses_layout(conn: Connection) -> None:
    ok = _status(SHA1, "ok", StatusState.PENDING, "Queued")
    bad = _status(SHA1, "bad", StatusState.FAILURE, "bad failed: exit 3")
    message = storage.status_message("me/p/ref/heads/master", [("ok", "Queued"), ("bad", "x")])
    assert storage.write_statuses(conn, [ok, bad], message) is True
    head = conn.branch("github-metadata").head()
    assert head is not None and head.message == "Update 2 jobs in me/p/ref/heads/master\n"
    tree = head.tree()
    d = f"me/p/commit/{SHA1}/status/ci/datakit/ok"
    assert tree.read_file(f"{d}/state") == b"pending\n"
    assert tree.read_file(f"{d}/description") == b"Queued\n"
    assert tree.read_file(f"{d}/target_url") == (
        f"http://ci.example/me/p/commit/{SHA1}?test=ok\n".encode()
    )
    assert gh.read_status(tree, ok.id) == ok
    assert gh.read_status(tree, bad.id) == bad
    # Nothing differs: no commit.
    assert storage.write_statuses(conn, [ok, bad], "again") is False
    assert conn.branch("github-metadata").head() == head
    # One change: only that status is rewritten.
    passed = _status(SHA1, "ok", StatusState.SUCCESS, "ok passed")
    assert storage.write_statuses(conn, [passed, bad], "next") is True
    new = conn.branch("github-metadata").head()
    assert new is not None
    changed = [d.path for d in new.diff(head)]
    assert changed and all("/ci/datakit/ok/" in p for p in changed)
    assert gh.read_status(new.tree(), passed.id) == passed


def test_write_statuses_retries_on_conflict(
    conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bridge writing the same files meanwhile makes commit() raise
    Conflict; the write is retried on a fresh transaction."""
    ok = _status(SHA1, "ok", StatusState.SUCCESS, "ok passed")
    calls = {"n": 0}
    real_commit = type(conn.branch("github-metadata").transaction()).commit

    def flaky(self: Transaction, message: str) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Conflict("the bridge wrote the same status")
        real_commit(self, message)

    monkeypatch.setattr(type(conn.branch("github-metadata").transaction()), "commit", flaky)
    assert storage.write_statuses(conn, [ok], "Set me/p/ref/heads/master:ok to ok passed")
    assert calls["n"] == 2
    head = conn.branch("github-metadata").head()
    assert head is not None and gh.read_status(head.tree(), ok.id) == ok


def test_write_statuses_real_conflict(conn: Connection, caplog: pytest.LogCaptureFixture) -> None:
    """Another writer changes the same status file between our read and our
    commit: the retry sees their value and writes ours over it."""
    ok = _status(SHA1, "ok", StatusState.SUCCESS, "ok passed")
    storage.write_statuses(conn, [_status(SHA1, "ok", StatusState.PENDING, "Queued")], "first")
    branch = conn.branch("github-metadata")
    rival = branch.transaction()
    gh.write_status(rival, _status(SHA1, "ok", StatusState.FAILURE, "rival"))
    storage_tx_commit = type(rival).commit
    done = {"rival": False}

    def commit_rival_first(self: Transaction, message: str) -> None:
        if not done["rival"] and self is not rival:
            done["rival"] = True
            storage_tx_commit(rival, "rival")
        storage_tx_commit(self, message)

    type(rival).commit = commit_rival_first  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.INFO, "datakit.ci.storage"):
            assert storage.write_statuses(conn, [ok], "ours") is True
    finally:
        type(rival).commit = storage_tx_commit  # type: ignore[method-assign]
    assert "conflict on commit" in caplog.text
    head = branch.head()
    assert head is not None and gh.read_status(head.tree(), ok.id) == ok
    assert "rival" in [c.message.strip() for c in head.parents]


def test_status_messages() -> None:
    target = "me/p/ref/heads/master"
    assert storage.status_message(target, [("ok", "ok passed")]) == (
        "Set me/p/ref/heads/master:ok to ok passed"
    )
    assert storage.status_message(target, [("a", "x"), ("b", "y")]) == (
        "Update 2 jobs in me/p/ref/heads/master"
    )
    with pytest.raises(ValueError):
        storage.status_message(target, [])
    assert storage.combine_messages(["one"]) == "one"
    assert storage.combine_messages(["one", "two"]) == "2 updates\n\none\ntwo"


def test_ensure_monitors(conn: Connection) -> None:
    repos = [ME_P, Repo("me", "q")]
    assert storage.ensure_monitors(conn, repos) is True
    head = conn.branch("github-metadata").head()
    assert head is not None and head.message == "Add .monitor files\n"
    assert head.tree().read_file("me/p/.monitor") == b""
    assert head.tree().read_file("me/q/.monitor") == b""
    assert storage.ensure_monitors(conn, repos) is False
    assert conn.branch("github-metadata").head() == head
    assert storage.ensure_monitors(conn, [ME_P, Repo("you", "r")]) is True
    assert _messages(conn, "github-metadata") == ["Add .monitor files"] * 2


# --- CI-18 ------------------------------------------------------------------------


def test_source_is_datakit_store(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    git(None, "init", "-q", str(plain))
    git(plain, "commit", "-q", "--allow-empty", "-m", "m1")
    assert storage.source_is_datakit_store(str(plain)) is False
    store = tmp_path / "store"
    git(None, "init", "-q", str(store))
    git(store, "commit", "-q", "--allow-empty", "-m", "m1")
    git(store, "branch", "github-metadata")
    assert storage.source_is_datakit_store(str(store)) is True
    assert storage.source_is_datakit_store(str(tmp_path / "missing")) is False
    assert storage.source_is_datakit_store("-uhoh") is False
    nested = tmp_path / "nested"
    git(None, "init", "-q", str(nested))
    git(nested, "commit", "-q", "--allow-empty", "-m", "m1")
    git(nested, "branch", "x/github-metadata")
    assert storage.source_is_datakit_store(str(nested)) is False


def test_source_is_datakit_store_written_by_datakit(tmp_path: Path) -> None:
    with connect(tmp_path / "db.git") as c:
        storage.ensure_monitors(c, [ME_P])
    assert storage.source_is_datakit_store(str(tmp_path / "db.git")) is True


# --- a `datakit serve --git` process, read back with git ---------------------------------


def test_results_readable_with_git(tmp_path: Path) -> None:
    """What the CI stores through a real server on disk is there for scripts:
    `git log` shows upstream's messages, `git show` the files."""
    db = tmp_path / "db.git"
    with (
        datakit_process("--git", str(db)) as (port, _metrics, _proc),
        connect(f"tcp://127.0.0.1:{port}", timeout=30) as c,
    ):
        commit = storage.write_run(c, BRANCH, FAILED)
        out = {"test": JobOutput("failure", FAILED.description, _saved(BRANCH, commit, True))}
        history = storage.write_history(c, MASTER, SHA1, None, out, Summary.FAILURE)
        status = _status(SHA1, "test", StatusState.FAILURE, FAILED.description)
        storage.write_statuses(c, [status], "Set me/p/ref/heads/master:test to x")
    assert git(db, "log", "--format=%s", BRANCH) == "Cached failure: exit 3"
    assert git(db, "show", f"{BRANCH}:log") == "boom"
    assert git(db, "show", f"{BRANCH}:failure") == "exit 3"
    assert git(db, "rev-parse", "status-me-p-ref-heads-master") == history
    assert git(db, "show", f"commit-index:me/p/commit/{SHA1}/ref-heads-master") == history
    state = f"github-metadata:me/p/commit/{SHA1}/status/ci/datakit/test/state"
    assert git(db, "show", state) == "failure"
    git(db, "fsck", "--strict")
