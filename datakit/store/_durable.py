"""The syscalls durable writes are made of, shared by objects, packs and refs."""

from __future__ import annotations

import os

# fdatasync skips the inode's timestamps; where it does not exist, fsync.
datasync = getattr(os, "fdatasync", os.fsync)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (it may write less at a time)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def new_temporary(directory: str, kind: str) -> tuple[int, str]:
    """Create a read-only ``tmp_<kind>_…`` file in ``directory`` (git's own
    temporary prefix, so `git gc` knows what a crash left); return fd, path."""
    path = os.path.join(directory, f"tmp_{kind}_{os.getpid()}_{os.urandom(6).hex()}")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444), path


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make the entries of directory `path` (new names, renames) durable."""
    _fsync(path, getattr(os, "O_DIRECTORY", 0))
