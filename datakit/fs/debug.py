"""`debug/src/<source>/{doc,level}`: log levels, settable at run time, shared by all."""

from __future__ import annotations

import errno as E
import logging

from datakit.options import LEVELS
from datakit.vfs import (
    Attr,
    Directory,
    File,
    FsError,
    Handle,
    Kind,
    MappingDir,
    Node,
    StaticFile,
)
from datakit.vfs import errors as fserr
from datakit.vfs.nodes import read_slice

SOURCES = {
    "datakit": "DataKit server",
    "datakit.server": "9p server sessions",
    "datakit.fs": "the DataKit filesystem tree",
    "datakit.store": "the Git store",
    "datakit.push": "auto-push to a Git remote",
}
# The command line's levels, and upstream's "app" (only the application's
# own messages) between quiet and error.
_LEVELS = {**LEVELS, "app": logging.CRITICAL}


def _level_name(logger: logging.Logger) -> str:
    level = logger.getEffectiveLevel()
    for name, value in sorted(_LEVELS.items(), key=lambda kv: kv[1]):
        if level <= value:
            return name
    return "quiet"


class LevelFile(File):
    def __init__(self, source: str) -> None:
        super().__init__("level")
        self._logger = logging.getLogger(source)
        self._blank = False  # after writing something that trims to empty

    def _content(self) -> bytes:
        return b"" if self._blank else f"{_level_name(self._logger)}\n".encode()

    def attr(self) -> Attr:
        return Attr(Kind.FILE, len(self._content()))

    async def open(self) -> Handle:
        return _LevelHandle(self)

    async def truncate(self, length: int) -> None:
        if length == 0:
            self._blank = True

    async def chmod(self, kind: Kind, target: str | None) -> None:
        raise fserr.not_permitted()

    def remove_error(self) -> FsError:
        return fserr.not_permitted()

    def set(self, data: bytes) -> None:
        text = data.strip().decode("utf-8", "replace")
        if not text:
            self._blank = True
            return
        if text not in _LEVELS:
            raise FsError(f"invalid level {text!r}: use one of {', '.join(_LEVELS)}", E.EINVAL)
        self._logger.setLevel(_LEVELS[text])
        self._blank = False


class _LevelHandle(Handle):
    def __init__(self, file: LevelFile) -> None:
        self._file = file

    async def read(self, offset: int, count: int) -> bytes:
        return read_slice(self._file._content(), offset, count)

    async def write(self, offset: int, data: bytes) -> int:
        self._file.set(data)
        return len(data)


class DebugDir(MappingDir[Node]):
    def __init__(self) -> None:
        src: MappingDir[Node] = MappingDir("src")
        for source, doc in SOURCES.items():
            files: list[Node] = [StaticFile("doc", f"{doc}\n".encode()), LevelFile(source)]
            src.add(MappingDir(source, files))
        super().__init__("debug", [src])

    async def create(self, name: str, kind: Kind, target: str | None) -> Node:
        raise fserr.read_only_dir()


__all__ = ["DebugDir", "Directory"]
