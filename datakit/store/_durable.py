"""The two syscalls durable writes are made of, shared by objects and refs."""

from __future__ import annotations

import os

# fdatasync skips the inode's timestamps; where it does not exist, fsync.
datasync = getattr(os, "fdatasync", os.fsync)


def fsync_dir(path: str) -> None:
    """Make the entries of directory `path` (new names, renames) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
