"""Turn store errors into filesystem errors with the spec's strings and an errno."""

from __future__ import annotations

import errno as E
import logging
from types import TracebackType

from datakit import store as st
from datakit.vfs import FsError

log = logging.getLogger("datakit.fs")

_ERRNO: list[tuple[type[Exception], int]] = [
    (st.NotFound, E.ENOENT),
    (st.IsADirectory, E.EISDIR),
    (st.NotADirectory, E.ENOTDIR),
    (st.AlreadyExists, E.EEXIST),
    (st.InvalidOffset, E.EINVAL),
    (st.FileTooLarge, E.EFBIG),
    (st.NoSpace, E.ENOSPC),
    (st.InvalidHash, E.EINVAL),
    (st.NotFastForward, E.EINVAL),
    (st.MergeConflict, E.EINVAL),
    (st.ConflictsRemain, E.EINVAL),
    (st.InvalidBranchName, E.EINVAL),
    (st.InvalidName, E.EINVAL),
    (st.InvalidContent, E.EINVAL),
    (st.NameTooLong, E.ENAMETOOLONG),
    (st.ReadOnlyEntry, E.EROFS),
    (st.FetchError, E.EIO),
    (st.CorruptTree, E.EIO),
]


def to_fs_error(exc: st.StoreError) -> FsError:
    for cls, code in _ERRNO:
        if isinstance(exc, cls):
            return FsError(str(exc), code)
    return FsError(str(exc), E.EIO)


class _StoreErrors:
    """Re-raise store errors as FsError so the server reports them verbatim,
    and a failing disk (full, read-only, I/O error) with its own errno: the
    operation failed cleanly (a transaction stays open to be committed again),
    which is the client's to know, not a server bug.

    A class rather than `contextlib.contextmanager`: it wraps a store call
    in most requests, and a generator-based one costs four calls each time."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, st.StoreError):
            raise to_fs_error(exc) from exc
        if isinstance(exc, OSError):
            log.warning("repository write failed: %s", exc)
            raise FsError(exc.strerror or str(exc), exc.errno or E.EIO) from exc


_STORE_ERRORS = _StoreErrors()


def store_errors() -> _StoreErrors:
    """`with store_errors(): ...` (see `_StoreErrors`)."""
    return _STORE_ERRORS
