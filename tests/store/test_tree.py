"""The editable tree of a transaction (spec 2.8, scenarios A2-A6)."""

from __future__ import annotations

import random
import time

import pytest

from datakit.store import (
    AlreadyExists,
    InvalidOffset,
    IsADirectory,
    Kind,
    NotADirectory,
    NotFound,
    Store,
)


@pytest.fixture
def mem() -> Store:
    return Store.memory()


def test_a2_tree_editing_primitives(mem: Store) -> None:
    t = mem.edit(None)
    t.put(("foo",), b"a")
    t.put(("sub", "bar", "baz"), b"b")
    with pytest.raises(NotADirectory) as e:
        t.put(("foo", "bar", "baz"), b"c")
    assert str(e.value) == "Is not a directory"
    with pytest.raises(NotADirectory):
        t.remove(("foo", "bar"))
    t.force_put(("foo", "bar", "baz"), Kind.FILE, b"c")
    assert t.kind(("foo",)) is Kind.DIR
    with pytest.raises(IsADirectory) as e2:
        t.put(("foo", "bar"), b"d")
    assert str(e2.value) == "Is a directory"
    t.remove(("foo", "bar", "baz"))
    assert [n for n, _ in t.listdir(())] == ["foo", "sub"]


def test_a3_fast_append(mem: Store) -> None:
    rng = random.Random(3)
    t = mem.edit(None)
    t.create_file(("f",))
    chunks = [bytes(rng.randrange(256) for _ in range(rng.randrange(10))) for _ in range(100)]
    for c in chunks:
        t.write(("f",), t.stat(("f",))[1], c)  # type: ignore[index]
    assert t.read_all(("f",)) == b"".join(chunks)


def test_append_1mib_is_linear(mem: Store) -> None:
    t = mem.edit(None)
    t.create_file(("big",))
    chunk = b"x" * 8192
    start = time.perf_counter()
    for i in range(128):
        t.write(("big",), i * 8192, chunk)
    elapsed = time.perf_counter() - start
    assert t.stat(("big",)) == (Kind.FILE, 1 << 20)
    assert elapsed < 0.5
    sha = t.write_tree()
    assert len(mem.tree(sha).read(("big",))) == 1 << 20


def test_a4_blob_writes(mem: Store) -> None:
    t = mem.edit(None)
    t.create_file(("f",))
    assert t.stat(("f",)) == (Kind.FILE, 0)
    with pytest.raises(InvalidOffset) as e:
        t.write(("f",), -2, b"x")
    assert str(e.value) == "Negative offset -2"
    t.write(("f",), 2, b"1st")
    assert t.read_all(("f",)) == b"\0\x001st"
    t.write(("f",), 0, b"AB")
    assert t.read_all(("f",)) == b"AB1st"
    t.write(("f",), 2, b"CD")
    assert t.read_all(("f",)) == b"ABCDt"
    t.write(("f",), 0, b"AB1st")
    t.write(("f",), 4, b"EF")
    assert t.read_all(("f",)) == b"AB1sEF"


def test_a5_truncate(mem: Store) -> None:
    t = mem.edit(None)
    t.put(("f",), b"AB1st")
    for length, want in [(6, b"AB1st\0"), (5, b"AB1st"), (3, b"AB1"), (0, b"")]:
        t.truncate(("f",), length)
        assert t.read_all(("f",)) == want
    with pytest.raises(InvalidOffset) as e:
        t.truncate(("f",), -1)
    assert str(e.value) == "Negative offset -1"
    with pytest.raises(NotFound):
        t.truncate(("nope",), 0)
    t.mkdir(("d",))
    t.truncate(("d",), 0)  # accepted and ignored
    with pytest.raises(IsADirectory):
        t.truncate(("d",), 3)


def test_a6_reads(mem: Store) -> None:
    t = mem.edit(None)
    t.put(("f",), b"AB1st")
    assert t.read(("f",), 2, -3) == b""
    assert t.read(("f",), 2, 0) == b""
    assert t.read(("f",), 2, 2) == b"1s"
    assert t.read(("f",), 2, 3) == b"1st"
    assert t.read(("f",), 2, 4) == b"1st"
    assert t.read(("f",), 5, 4) == b""
    with pytest.raises(InvalidOffset) as e:
        t.read(("f",), -1, 1)
    assert str(e.value) == "Negative offset -1"
    with pytest.raises(InvalidOffset) as e:
        t.read(("f",), 6, 1)
    assert str(e.value) == "Offset 6 beyond end-of-file (len = 5)"
    with pytest.raises(NotFound):
        t.read(("g",), 0, 1)
    # the same through a committed (clean, lazily loaded) file
    t2 = mem.edit(t.write_tree())
    assert t2.read(("f",), 2, 2) == b"1s"
    with pytest.raises(InvalidOffset):
        t2.read(("f",), 6, 1)


def test_write_semantics(mem: Store) -> None:
    t = mem.edit(None)
    with pytest.raises(NotFound):
        t.write(("nodir", "f"), 0, b"x")
    t.write(("new",), 0, b"x")  # missing file: created as regular
    assert t.kind(("new",)) is Kind.FILE
    t.put(("x",), b"abc", Kind.EXEC)
    t.write(("x",), 3, b"d")
    assert t.stat(("x",)) == (Kind.EXEC, 4)  # keeps its kind
    t.mkdir(("d",))
    with pytest.raises(IsADirectory):
        t.write(("d",), 0, b"x")
    with pytest.raises(NotADirectory):
        t.write(("x", "y"), 0, b"x")


def test_create_mkdir_remove(mem: Store) -> None:
    base = mem.edit(None)
    base.put(("a", "b"), b"B")
    base.put(("c",), b"C", Kind.EXEC)
    t = mem.edit(base.write_tree())
    t.create_file(("c",))  # replaces with an empty regular file
    assert t.stat(("c",)) == (Kind.FILE, 0)
    t.create_file(("l",), Kind.LINK, b"target")
    assert t.stat(("l",)) == (Kind.LINK, 6)
    with pytest.raises(IsADirectory):
        t.create_file(("a",))
    with pytest.raises(NotADirectory):
        t.create_file(("c", "x"))
    t.create_file(("p", "q", "r"))  # implicit parents
    assert t.kind(("p", "q")) is Kind.DIR
    with pytest.raises(AlreadyExists) as e:
        t.mkdir(("a",))
    assert str(e.value) == "Already exists"
    with pytest.raises(AlreadyExists):
        t.mkdir(("c",))
    t.mkdir(("empty",))
    t.mkdir(("e2",))
    t.mkdir(("e2", "e3"))
    assert t.listdir(("empty",)) == []
    with pytest.raises(NotFound):
        t.listdir(("zz",))
    with pytest.raises(NotADirectory):
        t.listdir(("c",))
    t.remove(("a",))  # whole subtree
    t.remove(("a",))  # already missing: fine
    t.remove(("zz", "yy"))
    assert t.kind(("a",)) is None
    names = [n for n, _ in t.listdir()]
    assert names == ["c", "e2", "empty", "l", "p"]
    view = mem.tree(t.write_tree())  # empty directories are dropped
    assert [n for n, _ in view.listdir()] == ["c", "l", "p"]
    assert t.kind(("empty",)) is Kind.DIR  # still visible in the transaction
    # last file removed: the directory stays (POSIX-like) until commit
    t.remove(("p", "q", "r"))
    assert t.kind(("p", "q")) is Kind.DIR
    assert mem.tree(t.write_tree()).lookup(("p",)) is None


def test_rename(mem: Store) -> None:
    t = mem.edit(None)
    t.put(("d", "f"), b"F")
    t.put(("d", "g"), b"G")
    t.put(("d", "sub", "x"), b"X")
    t.mkdir(("d", "empty"))
    with pytest.raises(NotFound):
        t.rename(("d",), "nope", "x")
    with pytest.raises(IsADirectory):
        t.rename(("d",), "f", "sub")
    t.rename(("d",), "f", "g")  # replaces a file
    assert t.read_all(("d", "g")) == b"F"
    assert t.kind(("d", "f")) is None
    t.rename(("d",), "g", "empty")  # an empty directory may be overwritten
    assert t.read_all(("d", "empty")) == b"F"
    t.rename(("d",), "sub", "sub2")  # whole subtree moves
    assert t.read_all(("d", "sub2", "x")) == b"X"
    t.mkdir(("d", "e"))
    t.rename(("d",), "e", "e2")
    assert t.kind(("d", "e2")) is Kind.DIR
    t.rename((), "d", "D")
    assert [n for n, _ in t.listdir(("D",))] == ["e2", "empty", "sub2"]


def test_set_kind(mem: Store) -> None:
    t = mem.edit(None)
    t.put(("f",), b"data")
    t.set_kind(("f",), Kind.EXEC)
    assert t.stat(("f",)) == (Kind.EXEC, 4)
    sha1 = t.write_tree()
    assert mem.tree(sha1).lookup(("f",)).kind is Kind.EXEC  # type: ignore[union-attr]
    t.set_kind(("f",), Kind.FILE)
    assert mem.tree(t.write_tree()).lookup(("f",)).kind is Kind.FILE  # type: ignore[union-attr]
    t.set_kind(("f",), Kind.LINK, b"somewhere")
    assert t.read_all(("f",)) == b"somewhere"
    assert t.kind(("f",)) is Kind.LINK
    with pytest.raises(NotFound):
        t.set_kind(("g",), Kind.EXEC)
    t.mkdir(("d",))
    with pytest.raises(IsADirectory):
        t.set_kind(("d",), Kind.EXEC)


def test_conflict_clearing(mem: Store) -> None:
    t = mem.edit(None)
    for p in ["a", "b", "c", "d", "e"]:
        t.put((p,), b"x")
    t.put(("dir", "x"), b"x")
    t.put(("dir2", "y"), b"x")
    t.conflicts = {("a",), ("b",), ("c",), ("d",), ("e",), ("dir", "x"), ("dir2", "y"), ("z",)}
    t.set_kind(("a",), Kind.EXEC)  # chmod does not clear
    t.rename((), "e", "e2")  # nor does rename
    assert ("a",) in t.conflicts and ("e",) in t.conflicts
    t.write(("a",), 0, b"y")
    t.truncate(("b",), 0)
    t.create_file(("c",))
    t.remove(("d",))
    t.remove(("dir",))  # clears below it only
    assert t.conflicts == {("e",), ("dir2", "y"), ("z",)}
    t.mkdir(("z",))
    assert t.conflicts == {("e",), ("dir2", "y")}


def test_incremental_write_tree_reuses_subtrees(mem: Store) -> None:
    base = mem.edit(None)
    for i in range(50):
        base.put(("big", f"f{i}"), b"%d" % i)
    base.put(("small", "x"), b"x")
    root = base.write_tree()
    big = mem.tree(root).lookup(("big",))
    t = mem.edit(root)
    t.write(("small", "x"), 1, b"y")
    new = t.write_tree()
    assert mem.tree(new).lookup(("big",)) == big
    assert t.write_tree() == new
    assert mem.tree(new).read(("small", "x")) == b"xy"
    # untouched trees are never loaded
    assert t._root.children["big"].children is None  # type: ignore[union-attr]
