"""wait_for_head / wait_for_path: finishing, timeouts and cancellation, on
every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from datakit.client import ABORT, AGAIN, Commit, Connection, File, Tree, WaitSignal
from tests.client.helpers import commit_files, head_or_fail

SHORT = 0.3


def in_thread(fn: Callable[[], object]) -> Callable[[], object]:
    """Run ``fn`` in a thread; the returned function joins and gives its result."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()

    def join() -> object:
        thread.join(10)
        assert not thread.is_alive(), "wait did not return"
        return out[0]

    return join


def test_wait_for_head_returns_the_finishing_value(conn: Connection) -> None:
    master = conn.branch("master")
    seen: list[Commit | None] = []

    def fn(head: Commit | None) -> object:
        seen.append(head)
        return AGAIN if head is None else ("got", head.message)

    join = in_thread(lambda: master.wait_for_head(fn, timeout=10))
    time.sleep(SHORT)
    commit_files(master, {"f": b"1"}, "first")
    assert join() == ("got", "first\n")
    assert seen[0] is None


def test_wait_for_head_with_a_head_already_there(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"f": b"1"})
    head = head_or_fail(conn, "master")
    assert master.wait_for_head(lambda h: h, timeout=5) == head


def test_wait_for_path_times_out_with_abort(conn: Connection) -> None:
    master = conn.branch("master")
    calls: list[object] = []

    def fn(node: object) -> WaitSignal:
        calls.append(node)
        return AGAIN

    start = time.monotonic()
    assert master.wait_for_path("missing", fn, timeout=SHORT) is ABORT
    elapsed = time.monotonic() - start
    assert SHORT <= elapsed < SHORT + 10  # generous: CI machines stall
    assert calls == [None]  # the current value is always delivered first
    start = time.monotonic()
    assert master.wait_for_head(lambda h: AGAIN, timeout=SHORT) is ABORT
    assert time.monotonic() - start >= SHORT


def test_wait_for_path_cancel(conn: Connection) -> None:
    master = conn.branch("master")
    cancel = threading.Event()
    join = in_thread(lambda: master.wait_for_path("x", lambda n: AGAIN, cancel=cancel))
    time.sleep(SHORT)
    start = time.monotonic()
    cancel.set()
    assert join() is ABORT
    assert time.monotonic() - start < 10
    # Already cancelled: returns at once without calling fn.
    called: list[object] = []
    assert master.wait_for_head(lambda h: called.append(h), cancel=cancel) is ABORT
    assert called == []


def test_timeout_zero_polls_once(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"f": b"now"})
    seen: list[object] = []
    assert master.wait_for_path("f", lambda n: seen.append(n) or AGAIN, timeout=0) is ABORT
    assert seen == [File(b"now")]
    assert master.wait_for_path("f", lambda n: n, timeout=0) == File(b"now")


def test_fn_may_abort(conn: Connection) -> None:
    master = conn.branch("master")
    assert master.wait_for_path("", lambda node: ABORT) is ABORT


def test_wait_for_path_sees_a_file_appear(conn: Connection) -> None:
    master = conn.branch("master")

    def fn(node: object) -> object:
        return node.data if isinstance(node, File) else AGAIN

    join = in_thread(lambda: master.wait_for_path("dir/file", fn, timeout=10))
    time.sleep(SHORT)
    commit_files(master, {"other": b"x"})  # does not touch dir/file
    commit_files(master, {"dir/file": b"hello"})
    assert join() == b"hello"


def test_watched_directory_is_a_usable_tree(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"d/a": b"A", "d/sub/b": b"B"})
    tree = master.wait_for_path("d", lambda node: node, timeout=5)
    assert isinstance(tree, Tree)
    assert tree.read_dir("") == ["a", "sub"]
    assert tree.read_file("sub/b") == b"B"


def test_wait_does_not_block_the_connection(conn: Connection) -> None:
    """A blocked watch must not stall other operations on the same
    connection (the 9p backend gives each wait its own socket)."""
    master = conn.branch("master")
    cancel = threading.Event()
    join = in_thread(lambda: master.wait_for_head(lambda h: AGAIN, cancel=cancel))
    time.sleep(SHORT)
    start = time.monotonic()
    commit_files(master, {"f": b"1"})
    assert head_or_fail(conn, "master").tree().read_file("f") == b"1"
    assert time.monotonic() - start < 10
    cancel.set()
    assert join() is ABORT


def test_other_connection_commits_wake_watches(
    conn: Connection, open_conn: Callable[[], Connection]
) -> None:
    """Commits made through another connection (for the Git backend: another
    store object on the repository, as another process would be) are seen."""
    other = open_conn()
    master = conn.branch("master")
    join = in_thread(
        lambda: master.wait_for_path(
            "f", lambda n: n.data if isinstance(n, File) else AGAIN, timeout=10
        )
    )
    time.sleep(SHORT)
    commit_files(other.branch("master"), {"f": b"from elsewhere"})
    assert join() == b"from elsewhere"
