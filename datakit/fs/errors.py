"""Turn store errors into filesystem errors with the spec's strings and an errno."""

from __future__ import annotations

import contextlib
import errno as E
from collections.abc import Iterator

from datakit import store as st
from datakit.vfs import FsError

_ERRNO: list[tuple[type[Exception], int]] = [
    (st.NotFound, E.ENOENT),
    (st.IsADirectory, E.EISDIR),
    (st.NotADirectory, E.ENOTDIR),
    (st.AlreadyExists, E.EEXIST),
    (st.InvalidOffset, E.EINVAL),
    (st.InvalidHash, E.EINVAL),
    (st.NotFastForward, E.EINVAL),
    (st.MergeConflict, E.EINVAL),
    (st.InvalidBranchName, E.EINVAL),
    (st.FetchError, E.EIO),
]


def to_fs_error(exc: st.StoreError) -> FsError:
    for cls, code in _ERRNO:
        if isinstance(exc, cls):
            return FsError(str(exc), code)
    return FsError(str(exc), E.EIO)


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Re-raise store errors as FsError so the server reports them verbatim."""
    try:
        yield
    except st.StoreError as exc:
        raise to_fs_error(exc) from exc
