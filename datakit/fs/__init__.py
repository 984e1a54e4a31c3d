"""The DataKit filesystem tree (spec/filesystem.md), built from vfs nodes over the store."""

from datakit.fs.database import Database

__all__ = ["Database"]
