"""Calling vfs nodes directly, as the server would, without a connection."""

from __future__ import annotations

from datakit.vfs import Directory, File, Node


async def walk(start: Node, path: str) -> Node:
    """The node at `path` ("a/b/c") below `start`, one lookup a step."""
    node = start
    for name in path.split("/") if path else ():
        assert isinstance(node, Directory), f"{node.name} is not a directory"
        node = await node.lookup(name)
    return node


async def names(directory: Node) -> list[str]:
    assert isinstance(directory, Directory)
    return [child.name for child in await directory.entries()]


async def read(file: Node) -> bytes:
    """What one open and read from offset 0 returns (a stream gives what it has)."""
    assert isinstance(file, File)
    handle = await file.open()
    try:
        return await handle.read(0, 1 << 20)
    finally:
        handle.close()


async def write(file: Node, data: bytes) -> None:
    """One open and a write at offset 0 (a command file runs `data`)."""
    assert isinstance(file, File)
    handle = await file.open()
    try:
        assert await handle.write(0, data) == len(data)
    finally:
        handle.close()
