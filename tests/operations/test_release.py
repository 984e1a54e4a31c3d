"""What a connection leaves behind is freed promptly (issue #8, point 13).

A real server runs in a thread of the test process, so the test can look at
its objects: a committed or closed transaction's tree must die by plain
reference counting (the cyclic collector is off while we check), and the
shared state of a branch made with `mkdir` and never committed must go with
the last connection that used it.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from datakit.client.ninep_client import Client
from datakit.fs.database import Database
from datakit.store import EditableTree
from tests.serverthread import running_server

TX = "branch/master/transactions/t"


@contextmanager
def gc_disabled() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def live(cls: type) -> list[object]:
    return [o for o in gc.get_objects() if isinstance(o, cls)]


@pytest.mark.parametrize("how", ["close", "commit", "disconnect"])
def test_finished_transaction_is_freed_without_the_cycle_collector(
    how: str, tmp_path: Path
) -> None:
    with running_server(tmp_path) as address, gc_disabled():
        c = Client.connect(address, timeout=30)
        try:
            c.mkdir("branch/master")
            before = {id(t) for t in live(EditableTree)}
            c.mkdir(TX)
            c.create(f"{TX}/rw/big", b"x" * (4 << 20))
            (tree,) = [t for t in live(EditableTree) if id(t) not in before]
            ref = weakref.ref(tree)
            del tree
            fid = c.open(f"{TX}/rw/big")  # an open fid on the file does not pin it
            if how == "disconnect":
                c.close()
                deadline = time.monotonic() + 30
                while ref() is not None and time.monotonic() < deadline:
                    time.sleep(0.01)  # until the server has seen the connection go
            else:
                c.write(f"{TX}/ctl", how.encode(), truncate=False)
            assert ref() is None
            if how != "disconnect":
                c.clunk(fid)
                if how == "commit":
                    assert c.read("branch/master/ro/big") == b"x" * (4 << 20)
        finally:
            c.close()


def test_uncommitted_mkdir_branch_leaves_nothing_once_its_connection_is_gone(
    tmp_path: Path,
) -> None:
    before = {id(d) for d in live(Database)}
    with running_server(tmp_path) as address:
        (database,) = [d for d in live(Database) if id(d) not in before]
        assert isinstance(database, Database)
        a = Client.connect(address, timeout=30)
        b = Client.connect(address, timeout=30)
        try:
            a.mkdir("branch/scratch")
            assert a.exists("branch/scratch/head")
            assert not b.exists("branch/scratch")  # per connection (spec 1.4)
            a.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                gc.collect()
                if "scratch" not in database._cells:
                    break
                time.sleep(0.01)
            assert "scratch" not in database._cells
            assert not b.exists("branch/scratch")
            b.mkdir("branch/scratch")  # the name is free to use again
            assert b.read("branch/scratch/head") == b"\n"
        finally:
            a.close()
            b.close()
