"""vfs/nodes.py: the node API the server relies on, and MappingDir."""

from __future__ import annotations

import errno

import pytest

from datakit.vfs import BufferFile, FsError, Kind, MappingDir, Node, StaticFile
from tests.vfs.helpers import names, read


def files(*names: str) -> list[Node]:
    return [StaticFile(name, name.encode()) for name in names]


async def test_mapping_dir_lists_in_insertion_order_by_default() -> None:
    directory = MappingDir("d", files("b", "a", "c"))
    assert await names(directory) == ["b", "a", "c"]


async def test_mapping_dir_with_sorted_listing_lists_by_name() -> None:
    class Sorted(MappingDir[Node]):
        sorted_listing = True

    directory = Sorted("d", files("b", "a", "c"))
    assert await names(directory) == ["a", "b", "c"]


async def test_mapping_dir_lookup_gives_the_child_itself_or_enoent() -> None:
    b = StaticFile("b", b"B")
    directory = MappingDir("d", [b])
    assert await directory.lookup("b") is b
    assert await read(await directory.lookup("b")) == b"B"
    with pytest.raises(FsError) as exc:
        await directory.lookup("missing")
    assert exc.value.errno == errno.ENOENT


async def test_mapping_dir_add_replaces_and_add_new_refuses_a_taken_name() -> None:
    directory = MappingDir("d", files("a"))
    replacement = StaticFile("a", b"new")
    assert directory.add(replacement) is replacement
    assert await directory.lookup("a") is replacement
    with pytest.raises(FsError) as exc:
        directory.add_new(StaticFile("a", b"third"))
    assert exc.value.errno == errno.EEXIST
    assert await directory.lookup("a") is replacement


async def test_mapping_dir_take_removes_only_the_node_asked_for() -> None:
    old = StaticFile("a", b"old")
    directory = MappingDir("d", [old])
    new = directory.add(StaticFile("a", b"new"))  # replaced through another fid
    with pytest.raises(FsError) as exc:
        directory.take(old)
    assert exc.value.errno == errno.ENOENT
    assert directory.take(new) is new
    assert await names(directory) == []
    with pytest.raises(FsError):
        directory.take(new)


async def test_mapping_dir_move_keeps_the_node_and_its_qid() -> None:
    src = MappingDir("src", files("a"))
    dst = MappingDir("dst", files("b"))
    node = await src.lookup("a")
    qid_path = node.qid_path
    src.move(node, dst, "b")  # replaces dst's b
    assert await names(src) == []
    assert await dst.lookup("b") is node
    assert node.name == "b" and node.qid_path == qid_path


async def test_a_mapping_dir_is_fixed_to_clients() -> None:
    directory = MappingDir("d", files("a"))
    child = await directory.lookup("a")
    for attempt in (
        directory.create("x", Kind.FILE, None),
        directory.mkdir("x"),
        directory.remove(child),
        directory.rename(child, directory, "x"),
    ):
        with pytest.raises(FsError) as exc:
            await attempt
        assert exc.value.errno == errno.EROFS
    assert await names(directory) == ["a"]


def test_every_node_has_its_own_qid_path_and_no_cached_qid_until_a_server_sets_one() -> None:
    a, b = StaticFile("a", b""), BufferFile("a")
    assert a.qid_path != b.qid_path
    assert a.cached_qid is None and b.cached_qid is None
    a.cached_qid = "wire"
    assert b.cached_qid is None


def test_detach_does_nothing_on_a_tree_without_connection_state() -> None:
    directory = MappingDir("d", files("a"))
    directory.detach()  # the server calls it on every root: it must exist and not fail
    assert list(directory.children) == ["a"]
