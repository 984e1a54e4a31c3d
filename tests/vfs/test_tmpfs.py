"""vfs/tmpfs.py: the writable example tree, a MappingDir that clients fill."""

from __future__ import annotations

import errno

import pytest

from datakit.vfs import Directory, FsError, Kind
from datakit.vfs.tmpfs import TmpDir, example_tree
from tests.vfs.helpers import names, read, walk, write


async def test_files_and_directories_are_listed_by_name() -> None:
    root = example_tree()
    await root.create("b", Kind.FILE, None)
    await root.mkdir("a")
    await root.create("c", Kind.LINK, "target")
    assert await names(root) == ["a", "b", "c"]
    assert (await walk(root, "c")).attr().target == "target"


async def test_written_data_is_read_back() -> None:
    root = example_tree()
    sub = await root.mkdir("sub")
    assert isinstance(sub, Directory)
    await write(await sub.create("f", Kind.FILE, None), b"hello")
    assert await read(await walk(root, "sub/f")) == b"hello"


async def test_mkdir_on_a_taken_name_is_eexist() -> None:
    root = example_tree()
    await root.create("f", Kind.FILE, None)
    with pytest.raises(FsError) as exc:
        await root.mkdir("f")
    assert exc.value.errno == errno.EEXIST


async def test_removing_a_non_empty_directory_is_enotempty() -> None:
    root = example_tree()
    sub = await root.mkdir("sub")
    assert isinstance(sub, TmpDir)
    await sub.create("f", Kind.FILE, None)
    with pytest.raises(FsError) as exc:
        await root.remove(sub)
    assert exc.value.errno == errno.ENOTEMPTY
    await sub.remove(await sub.lookup("f"))
    await root.remove(sub)
    assert await names(root) == []


async def test_a_stale_node_cannot_be_removed_or_renamed() -> None:
    root = example_tree()
    old = await root.create("f", Kind.FILE, None)
    await root.remove(old)
    await root.create("f", Kind.FILE, None)  # a new f, through another fid
    for attempt in (root.remove(old), root.rename(old, root, "g")):
        with pytest.raises(FsError) as exc:
            await attempt
        assert exc.value.errno == errno.ENOENT
    assert await names(root) == ["f"]


async def test_rename_moves_the_same_node_between_directories() -> None:
    root = example_tree()
    a = await root.mkdir("a")
    assert isinstance(a, TmpDir)
    f = await a.create("f", Kind.FILE, None)
    await write(f, b"data")
    await a.rename(f, root, "g")
    assert await names(a) == []
    assert await root.lookup("g") is f
    assert await read(f) == b"data"


async def test_rename_of_a_file_onto_a_directory_is_eisdir() -> None:
    root = example_tree()
    f = await root.create("f", Kind.FILE, None)
    await root.mkdir("d")
    with pytest.raises(FsError) as exc:
        await root.rename(f, root, "d")
    assert exc.value.errno == errno.EISDIR
