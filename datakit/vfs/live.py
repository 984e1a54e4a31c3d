"""Live values and the stream files that follow them (`head.live`, `tree.live`).

A `Cell` holds the latest value of something (a branch head, say); readers
block until the *rendering* of the value differs from the last line they were
given, so intermediate values may be skipped and a change that reverts is not
reported.  Blocked readers are plain trio waits: when the server cancels a
flushed request the wait ends and nothing is left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

from datakit.vfs import errors
from datakit.vfs.nodes import Attr, File, Handle, Kind, StreamCursor

T = TypeVar("T")


class Cell(Generic[T]):
    """A latest-value publish/subscribe cell."""

    def __init__(self, value: T) -> None:
        self._value = value
        self._changed = trio.Event()
        self.readers = 0
        self.version = 0  # counts every set(), for readers that want each update

    @property
    def value(self) -> T:
        return self._value

    def set(self, value: T) -> None:
        self._value = value
        self.version += 1
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_changed(self) -> None:
        """Wait for the next `set` (callers re-check their condition after)."""
        await self._changed.wait()


class StreamFile(File):
    """A read-only stream of renderings of a cell's value (spec 2.6)."""

    def __init__(
        self,
        name: str,
        cell: Cell[T],
        render: Callable[[T], bytes],
        *,
        initial: Callable[[], bytes] | None = None,
        on_reader: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(name)
        self.cell = cell
        self.render = render
        # `reflog` starts every reader from a blank line rather than the current value.
        self._initial = initial
        self._on_reader = on_reader

    def attr(self) -> Attr:
        return Attr(Kind.FILE, 0)

    async def open(self) -> Handle:
        first = self._initial() if self._initial else self.render(self.cell.value)
        return _StreamHandle(self, first)

    async def truncate(self, length: int) -> None:
        raise errors.read_only_file()


class _StreamHandle(Handle):
    may_block = True

    def __init__(self, file: StreamFile, first: bytes) -> None:
        self._file = file
        self._last = first
        self._buf = first
        self._cursor = StreamCursor()

    async def read(self, offset: int, count: int) -> bytes:
        if self._cursor.check(offset) or count <= 0:
            return b""
        if not self._buf:
            await self._wait_for_change()
        chunk, self._buf = self._buf[:count], self._buf[count:]
        return self._cursor.advance(chunk)

    async def _wait_for_change(self) -> None:
        file = self._file
        file.cell.readers += 1
        if file._on_reader:
            file._on_reader(+1)
        try:
            while True:
                rendered = file.render(file.cell.value)
                if rendered != self._last:
                    self._last = self._buf = rendered
                    return
                await file.cell.wait_changed()
        finally:
            file.cell.readers -= 1
            if file._on_reader:
                file._on_reader(-1)
