"""The versioned store: a git repository (in memory or on disk) holding
DataKit's branches, commits and trees. Synchronous; knows nothing of 9p."""

from datakit.formats import Change, DiffOp

from ._blobstream import StreamedBlob
from ._content import Limits
from ._errors import (
    AlreadyExists,
    ConflictsRemain,
    CorruptTree,
    FetchError,
    FileTooLarge,
    InvalidBranchName,
    InvalidContent,
    InvalidHash,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    MergeConflict,
    NameTooLong,
    NoSpace,
    NotADirectory,
    NotFastForward,
    NotFound,
    ReadOnlyEntry,
    StoreError,
)
from ._lsremote import RemoteHeads, check_remote, ls_remote
from ._names import check_name
from ._objects import AUTHOR, EMPTY_TREE, BlobReader, CachedBlob, CommitInfo, Entry, Kind, Path
from ._receive import PushRefused
from ._refs import check_branch_name, is_valid_branch_name
from ._store import BranchChange, Store
from ._transaction import Committed, Merge, Transaction, merge_base
from ._transport import ALLOW_ALL, FetchGuard, RemotePolicy, parse_schemes, shown_url
from ._tree import EditableTree, TreeView, conflict_bytes

__all__ = [
    "ALLOW_ALL",
    "AUTHOR",
    "EMPTY_TREE",
    "AlreadyExists",
    "BlobReader",
    "BranchChange",
    "CachedBlob",
    "Change",
    "CommitInfo",
    "Committed",
    "ConflictsRemain",
    "CorruptTree",
    "DiffOp",
    "EditableTree",
    "Entry",
    "FetchError",
    "FetchGuard",
    "FileTooLarge",
    "InvalidBranchName",
    "InvalidContent",
    "InvalidHash",
    "InvalidName",
    "InvalidOffset",
    "IsADirectory",
    "Kind",
    "Limits",
    "Merge",
    "MergeConflict",
    "NameTooLong",
    "NoSpace",
    "NotADirectory",
    "NotFastForward",
    "NotFound",
    "Path",
    "PushRefused",
    "ReadOnlyEntry",
    "RemoteHeads",
    "RemotePolicy",
    "Store",
    "StoreError",
    "StreamedBlob",
    "Transaction",
    "TreeView",
    "check_branch_name",
    "check_name",
    "check_remote",
    "conflict_bytes",
    "is_valid_branch_name",
    "ls_remote",
    "merge_base",
    "parse_schemes",
    "shown_url",
]
