"""A small writable in-memory filesystem built from vfs nodes.

It exercises every server path that the DataKit tree does not (arbitrary
create/write/rename/remove), and `datakit serve --example-tree` serves it so
kernel-client tests can check plain POSIX behaviour.
"""

from __future__ import annotations

from datakit.vfs import errors
from datakit.vfs.nodes import (
    Attr,
    Directory,
    File,
    Handle,
    Kind,
    MappingDir,
    Node,
    read_slice,
    truncate_buffer,
    write_into,
)

# The example tree holds whole files in memory: each is bounded (EFBIG past
# it) by `datakit serve --max-file-size`, or this when built directly.
DEFAULT_LIMIT = 1 << 30


class TmpFile(File):
    def __init__(
        self, name: str, kind: Kind = Kind.FILE, target: str = "", limit: int = DEFAULT_LIMIT
    ) -> None:
        super().__init__(name)
        self.kind = kind
        self.limit = limit
        self.data = bytearray(
            target.encode("utf-8", "surrogateescape") if kind is Kind.LINK else b""
        )

    def attr(self) -> Attr:
        target = self.data.decode("utf-8", "surrogateescape") if self.kind is Kind.LINK else ""
        return Attr(self.kind, len(self.data), target)

    async def open(self) -> Handle:
        return _TmpHandle(self)

    async def truncate(self, length: int) -> None:
        truncate_buffer(self.data, length, self.limit)

    async def chmod(self, kind: Kind, target: str | None) -> None:
        if kind is Kind.LINK:
            if target is None:
                raise errors.invalid("Missing target for symlink!")
            self.data = bytearray(target.encode("utf-8", "surrogateescape"))
        self.kind = kind


class _TmpHandle(Handle):
    def __init__(self, file: TmpFile) -> None:
        self._file = file

    async def read(self, offset: int, count: int) -> bytes:
        return read_slice(self._file.data, offset, count)

    async def write(self, offset: int, data: bytes) -> int:
        if offset < 0:
            raise errors.negative_offset(offset)
        write_into(self._file.data, offset, data, self._file.limit)
        return len(data)


class TmpDir(MappingDir[Node]):
    sorted_listing = True

    def __init__(self, name: str, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__(name)
        self.limit = limit  # of each file below

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        if isinstance(self.children.get(name), Directory):
            raise errors.is_a_directory()
        if kind is Kind.LINK and target is None:
            raise errors.invalid("Missing target for symlink!")
        return self.add(TmpFile(name, kind, target or "", self.limit))

    async def mkdir(self, name: str) -> Node:
        return self.add_new(TmpDir(name, self.limit))

    async def remove(self, child: Node) -> None:
        if self.children.get(child.name) is child and isinstance(child, TmpDir) and child.children:
            raise errors.FsError("Directory not empty", 39)
        self.take(child)

    async def rename(self, child: Node, new_dir: Directory, new_name: str) -> None:
        if not isinstance(new_dir, TmpDir):
            raise errors.FsError("Invalid cross-device link", 18)
        if self.children.get(child.name) is not child:
            raise errors.not_found()
        target = new_dir.children.get(new_name)
        if target is child:
            return
        if isinstance(target, TmpDir) and (target.children or not child.is_dir):
            raise errors.is_a_directory()
        if target is not None and not target.is_dir and child.is_dir:
            raise errors.not_a_directory()
        self.move(child, new_dir, new_name)


def example_tree(max_file_size: int = DEFAULT_LIMIT) -> TmpDir:
    """A fresh, empty writable tree (one per connection or shared, as the caller likes)."""
    return TmpDir("/", max_file_size)
