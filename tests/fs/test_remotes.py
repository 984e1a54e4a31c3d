"""fs/remotes.py: `remotes/`, this connection's remote definitions."""

from __future__ import annotations

import errno

import pytest

from datakit.fs.database import Database
from datakit.fs.remotes import RemotesDir
from datakit.fs.root import Root
from datakit.vfs import Directory, FsError, Kind
from tests.vfs.helpers import names, read, walk, write


async def remotes(root: Root) -> RemotesDir:
    node = await walk(root, "remotes")
    assert isinstance(node, RemotesDir)
    return node


async def test_remotes_are_listed_by_name_and_hold_url_fetch_head(root: Root) -> None:
    directory = await remotes(root)
    await directory.mkdir("origin")
    await directory.mkdir("backup")
    assert await names(directory) == ["backup", "origin"]
    origin = await directory.lookup("origin")
    assert await names(origin) == ["url", "fetch", "head"]
    await write(await walk(origin, "url"), b"git://example.invalid/repo")
    assert await read(await walk(origin, "url")) == b"git://example.invalid/repo"


async def test_remotes_belong_to_one_connection(database: Database) -> None:
    mine, theirs = database.connect(), database.connect()
    await (await remotes(mine)).mkdir("origin")
    assert await names(await remotes(theirs)) == []


async def test_a_remote_name_is_made_once_and_only_as_a_directory(root: Root) -> None:
    directory = await remotes(root)
    await directory.mkdir("origin")
    with pytest.raises(FsError) as exc:
        await directory.mkdir("origin")
    assert exc.value.errno == errno.EEXIST
    with pytest.raises(FsError) as exc:
        await directory.create("file", Kind.FILE, None)
    assert exc.value.errno == errno.EPERM
    with pytest.raises(FsError) as exc:
        await directory.mkdir("..")
    assert exc.value.errno == errno.EINVAL


async def test_rename_keeps_the_remote_and_refuses_a_taken_name(root: Root) -> None:
    directory = await remotes(root)
    origin = await directory.mkdir("origin")
    await directory.mkdir("backup")
    with pytest.raises(FsError) as exc:
        await directory.rename(origin, directory, "backup")
    assert exc.value.errno == errno.EEXIST
    await directory.rename(origin, directory, "upstream")
    assert await directory.lookup("upstream") is origin
    assert await names(directory) == ["backup", "upstream"]


async def test_rename_out_of_remotes_is_exdev(root: Root) -> None:
    directory = await remotes(root)
    origin = await directory.mkdir("origin")
    other = await walk(root, "branch")
    assert isinstance(other, Directory)
    with pytest.raises(FsError) as exc:
        await directory.rename(origin, other, "origin")
    assert exc.value.errno == errno.EXDEV


async def test_a_removed_remote_is_gone_and_cannot_be_removed_twice(root: Root) -> None:
    directory = await remotes(root)
    origin = await directory.mkdir("origin")
    await directory.remove(origin)
    assert await names(directory) == []
    with pytest.raises(FsError) as exc:
        await directory.remove(origin)
    assert exc.value.errno == errno.ENOENT
