"""Filesystem errors: an errno for 9P2000.u/.L and the exact message for 9P2000.

The message strings are part of the protocol: the Linux client maps unknown
errno 0 replies back to an errno by matching the text, and DataKit clients
match on the text too, so they are kept byte-for-byte as in the spec.
"""

from __future__ import annotations

import errno as _errno


class FsError(Exception):
    """A failure to report to the client (never a server bug)."""

    def __init__(self, message: str, errno: int = _errno.EIO) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno

    def __str__(self) -> str:
        return self.message


def not_found() -> FsError:
    return FsError("No such file or directory", _errno.ENOENT)


def is_a_directory() -> FsError:
    return FsError("Is a directory", _errno.EISDIR)


def not_a_directory() -> FsError:
    return FsError("Is not a directory", _errno.ENOTDIR)


def read_only_file() -> FsError:
    return FsError("Read-only file", _errno.EROFS)


def read_only_dir() -> FsError:
    return FsError("Directory is read-only", _errno.EROFS)


def not_permitted() -> FsError:
    return FsError("Operation not permitted", _errno.EPERM)


def already_exists() -> FsError:
    return FsError("Already exists", _errno.EEXIST)


def only_directories() -> FsError:
    return FsError("Can only contain directories", _errno.EPERM)


def invalid(message: str) -> FsError:
    return FsError(message, _errno.EINVAL)


def negative_offset(offset: int) -> FsError:
    return FsError(f"Negative offset {offset}", _errno.EINVAL)


def beyond_eof(offset: int, length: int) -> FsError:
    return FsError(f"Offset {offset} beyond end-of-file (len = {length})", _errno.EINVAL)


def too_large() -> FsError:
    return FsError("File too large", _errno.EFBIG)


def seek_in_stream() -> FsError:
    return FsError("Attempt to seek in stream", _errno.ESPIPE)


def chmod_special() -> FsError:
    return FsError("Can't chmod special file", _errno.EPERM)
