"""Transaction lifetime: the context manager aborts on exceptions and when
left without a commit, on every backend."""

from __future__ import annotations

import pytest

from datakit.client import Connection, TransactionClosed
from tests.client.conftest import Backend
from tests.client.helpers import commit_files, head_or_fail


class Boom(Exception):
    pass


def test_exception_aborts_and_propagates(conn: Connection) -> None:
    master = conn.branch("master")
    with pytest.raises(Boom), master.transaction() as t:
        t.create_file("f", b"x")
        raise Boom
    assert t.closed
    assert master.head() is None
    with pytest.raises(TransactionClosed):
        t.read_file("f")


def test_leaving_without_commit_aborts(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"f": b"1"})
    head = head_or_fail(conn, "master")
    with master.transaction() as t:
        t.replace_file("f", b"2")
    assert t.closed
    assert master.head() == head
    assert head.tree().read_file("f") == b"1"


def test_failed_commit_then_exception_aborts(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"f": b"base"})
    with pytest.raises(Boom), master.transaction() as t:
        commit_files(master, {"f": b"inner"})
        t.replace_file("f", b"outer")
        with pytest.raises(Exception):  # noqa: B017 - the conflict itself is tested elsewhere
            t.commit("conflicting")
        raise Boom
    assert t.closed
    assert head_or_fail(conn, "master").tree().read_file("f") == b"inner"


def test_transactions_are_isolated(conn: Connection) -> None:
    master = conn.branch("master")
    with master.transaction() as t1, master.transaction() as t2:
        t1.create_file("one", b"1")
        assert not t2.exists("one")
        t2.create_file("two", b"2")
        t1.commit("one")
        assert not t2.exists("one")  # a transaction is a snapshot
        t2.commit("two")
    assert head_or_fail(conn, "master").tree().read_dir("") == ["one", "two"]


def test_9p_abort_discards_the_server_transaction(backend: Backend) -> None:
    if not backend.is_9p:
        pytest.skip("server-side state only exists with the 9p backend")
    from datakit.client.ninep_backend import NinepConnection

    with backend.open() as conn:
        assert isinstance(conn, NinepConnection)
        master = conn.branch("master")
        with pytest.raises(Boom), master.transaction():
            assert len(conn.client.ls("branch/master/transactions")) == 1
            raise Boom
        assert conn.client.ls("branch/master/transactions") == []
