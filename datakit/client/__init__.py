"""The DataKit client library: one API, two backends.

``connect("unix:///var/run/datakit.sock")`` or ``connect("tcp://host:5640")``
talks 9p to a DataKit server; ``connect("/path/to/repo")`` works directly on
a Git repository on disk, with no server. Both return a
:class:`Connection` with identical behaviour (the conformance suite in
``tests/client`` runs every scenario against both), so a script written
against one runs unchanged on the other. See ``docs/client.md``.
"""

from __future__ import annotations

import os
from typing import Any

from datakit.client.api import Branch, Commit, Connection, Transaction, Tree
from datakit.client.errors import (
    AlreadyExists,
    BackendError,
    Conflict,
    ConflictsRemain,
    DataKitError,
    DoesNotExist,
    FetchFailed,
    InvalidBranchName,
    InvalidHash,
    InvalidName,
    InvalidPath,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotAFile,
    NotASymlink,
    NotFastForward,
    TransactionClosed,
)
from datakit.client.values import (
    ABORT,
    AGAIN,
    Added,
    Diff,
    Dir,
    Exec,
    File,
    Kind,
    Link,
    MergeInputs,
    MergeResult,
    PathLike,
    Removed,
    Stat,
    Updated,
    Value,
    WaitSignal,
)

NINEP_SCHEMES = ("tcp://", "unix://")


def connect(address: str | os.PathLike[str], **options: Any) -> Connection:
    """Open a connection; use it as a context manager.

    * ``tcp://HOST[:PORT]`` (port 5640 by default) or ``unix:///PATH``: the
      9p backend. Options: ``msize`` (proposed message size), ``timeout``
      (socket timeout in seconds for ordinary requests).
    * a filesystem path: the Git backend on that repository, created if
      missing. Options: ``author``, ``head``, ``bare``, ``compression``,
      ``git_dir`` (see :class:`~datakit.client.git_backend.GitConnection`).

    Other ``scheme://`` addresses are refused rather than guessed at: in
    particular ``file://`` names a Unix socket for upstream's server but
    would read as a directory here.
    """
    if isinstance(address, str) and "://" in address:
        if address.startswith(NINEP_SCHEMES):
            from datakit.client.ninep_backend import NinepConnection

            return NinepConnection(address, **options)
        scheme = address.split("://", 1)[0]
        raise ValueError(
            f"{address}: unsupported scheme {scheme}://; use tcp://HOST[:PORT] or "
            "unix:///PATH for a 9p server, or a plain path for a Git repository"
        )
    from datakit.client.git_backend import GitConnection

    return GitConnection(address, **options)


__all__ = [
    "ABORT",
    "AGAIN",
    "Added",
    "AlreadyExists",
    "BackendError",
    "Branch",
    "Commit",
    "Conflict",
    "ConflictsRemain",
    "Connection",
    "DataKitError",
    "Diff",
    "Dir",
    "DoesNotExist",
    "Exec",
    "FetchFailed",
    "File",
    "InvalidBranchName",
    "InvalidHash",
    "InvalidName",
    "InvalidPath",
    "IsADirectory",
    "Kind",
    "Link",
    "MergeInputs",
    "MergeResult",
    "NameTooLong",
    "NotADirectory",
    "NotAFile",
    "NotASymlink",
    "NotFastForward",
    "PathLike",
    "Removed",
    "Stat",
    "Transaction",
    "TransactionClosed",
    "Tree",
    "Updated",
    "Value",
    "WaitSignal",
    "connect",
]
