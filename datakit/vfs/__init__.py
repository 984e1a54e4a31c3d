"""Protocol-neutral virtual filesystem nodes served by `datakit.server`."""

from datakit.vfs.errors import FsError
from datakit.vfs.live import Cell, StreamFile
from datakit.vfs.nodes import (
    Attr,
    BufferFile,
    CommandFile,
    Directory,
    File,
    Handle,
    Kind,
    MappingDir,
    Node,
    StaticFile,
    StatusFile,
    StreamCursor,
)

__all__ = [
    "Attr",
    "BufferFile",
    "Cell",
    "CommandFile",
    "Directory",
    "File",
    "FsError",
    "Handle",
    "Kind",
    "MappingDir",
    "Node",
    "StaticFile",
    "StatusFile",
    "StreamCursor",
    "StreamFile",
]
