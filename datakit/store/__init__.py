"""The versioned store: a git repository (in memory or on disk) holding
DataKit's branches, commits and trees. Synchronous; knows nothing of 9p."""

from ._errors import (
    AlreadyExists,
    CorruptTree,
    FetchError,
    InvalidBranchName,
    InvalidHash,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    MergeConflict,
    NameTooLong,
    NotADirectory,
    NotFastForward,
    NotFound,
    StoreError,
)
from ._names import check_name
from ._objects import AUTHOR, EMPTY_TREE, CommitInfo, Entry, Kind, Path
from ._refs import check_branch_name, is_valid_branch_name
from ._store import Store
from ._tree import EditableTree, TreeView, conflict_bytes

__all__ = [
    "AUTHOR",
    "EMPTY_TREE",
    "AlreadyExists",
    "CommitInfo",
    "CorruptTree",
    "EditableTree",
    "Entry",
    "FetchError",
    "InvalidBranchName",
    "InvalidHash",
    "InvalidName",
    "InvalidOffset",
    "IsADirectory",
    "Kind",
    "MergeConflict",
    "NameTooLong",
    "NotADirectory",
    "NotFastForward",
    "NotFound",
    "Path",
    "Store",
    "StoreError",
    "TreeView",
    "check_branch_name",
    "check_name",
    "conflict_bytes",
    "is_valid_branch_name",
]
