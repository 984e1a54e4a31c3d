"""``read_chunks``: a file's content a piece at a time, on every backend
(see conftest), equal to ``read_file`` and with ``read_file``'s errors; a
file much bigger than a piece is read in bounded memory."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.client import Connection, DoesNotExist, NotAFile, TransactionClosed, connect
from datakit.client.api import READ_CHUNK
from tests.client.helpers import commit_files, head_or_fail
from tests.serverthread import running_server

CHUNK = 1000
SIZES = {"empty": 0, "one": 1, "below": CHUNK - 1, "exact": CHUNK, "above": CHUNK + 1}
SIZES["many"] = 3 * CHUNK + 17


def _content(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


def _files() -> dict[str, bytes]:
    files = {f"d/{name}": _content(size, len(name)) for name, size in SIZES.items()}
    files["big"] = _content(3 * (1 << 20) + 5)  # several default pieces, several 9p messages
    return files


def test_read_chunks_equals_read_file(conn: Connection) -> None:
    master = conn.branch("master")
    files = _files()
    commit_files(master, files)
    with master.transaction() as t:
        t.create_file("tool", b"#!/bin/sh\necho hi\n", executable=True)
        t.commit("exec")
    tree = head_or_fail(conn, "master").tree()
    for path, data in [*files.items(), ("tool", b"#!/bin/sh\necho hi\n")]:
        for size in (CHUNK, READ_CHUNK):
            chunks = list(tree.read_chunks(path, size))
            assert b"".join(chunks) == data == tree.read_file(path), path
            assert all(0 < len(c) <= size for c in chunks), path
    assert list(tree.read_chunks("d/empty")) == []
    assert len(list(tree.read_chunks("d/many", CHUNK))) >= 4


def test_read_chunks_in_a_transaction(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"a": _content(5000)})
    with master.transaction() as t:
        t.create_file("b", _content(2500, 3), executable=True)
        t.replace_file("a", _content(4100, 9))
        assert b"".join(t.read_chunks("a", CHUNK)) == _content(4100, 9)
        assert b"".join(t.read_chunks("b", CHUNK)) == _content(2500, 3)
        assert list(t.read_chunks("b", CHUNK)) != []
        t.abort()
    with pytest.raises(TransactionClosed):
        t.read_chunks("a")


def test_read_chunks_errors(conn: Connection) -> None:
    master = conn.branch("master")
    commit_files(master, {"dir/file": b"x"})
    with master.transaction() as t:
        t.create_symlink("link", "dir/file")
        t.commit("link")
    tree = head_or_fail(conn, "master").tree()
    with master.transaction() as t:
        for reader in (tree, t):
            # Raised by the call itself, before any iteration.
            with pytest.raises(DoesNotExist):
                reader.read_chunks("missing")
            with pytest.raises(DoesNotExist):
                reader.read_chunks("dir/file/below")
            with pytest.raises(NotAFile):
                reader.read_chunks("dir")
            with pytest.raises(NotAFile):
                reader.read_chunks("")
            with pytest.raises(NotAFile):
                reader.read_chunks("link")
            with pytest.raises(ValueError):
                reader.read_chunks("dir/file", 0)
    # A read abandoned part-way releases the file: many of them leave the
    # connection working.
    commit_files(master, {"big": _content(5 * CHUNK)})
    tree = head_or_fail(conn, "master").tree()
    for _ in range(50):
        it = tree.read_chunks("big", CHUNK)
        next(it)
        del it
    assert tree.read_file("dir/file") == b"x"


@pytest.fixture(params=["git", "9p"])
def big_file_conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Connection]:
    """A repository holding ``big`` (100 MiB, written by the Git backend:
    through 9p it takes long), read by the Git backend or a ``--git`` server."""
    repo = tmp_path / "repo.git"
    with connect(repo) as c:
        commit_files(c.branch("master"), {"big": _big()})
    if request.param == "git":
        with connect(repo) as c:
            yield c
    else:
        with running_server(tmp_path, git=str(repo)) as address, connect(address, timeout=60) as c:
            yield c


MIB = 1 << 20


def _big() -> bytes:
    return b"".join(i.to_bytes(4, "big") * (MIB // 4) for i in range(100))  # compresses well


def test_big_file_read_in_bounded_memory(big_file_conn: Connection) -> None:
    """100 MiB read with Python allocations well under the file's size
    (``read_file`` of it peaks at a multiple of it)."""
    mib = MIB
    expected = hashlib.sha256(_big()).hexdigest()
    tree = head_or_fail(big_file_conn, "master").tree()
    gc.collect()
    tracemalloc.start()
    try:
        sha = hashlib.sha256()
        total = 0
        for chunk in tree.read_chunks("big"):
            sha.update(chunk)
            total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 100 * mib
    assert sha.hexdigest() == expected
    assert peak < 16 * mib, f"peak {peak / mib:.1f} MiB"
