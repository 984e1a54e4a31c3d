"""Errors raised by the store.

``str(error)`` is always the exact user-visible message of the DataKit
filesystem spec (section 6), so upper layers can pass it through unchanged.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by :mod:`datakit.store`."""

    message = "store error"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class NotFound(StoreError):
    message = "No such file or directory"


class IsADirectory(StoreError):
    message = "Is a directory"


class NotADirectory(StoreError):
    message = "Is not a directory"


class AlreadyExists(StoreError):
    message = "Already exists"


class InvalidOffset(StoreError):
    """Bad offset or length; the message names it (``Negative offset -2`` ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class FileTooLarge(StoreError):
    """A write or truncate past the configured maximum file size; EFBIG."""

    message = "File too large"


class NoSpace(StoreError):
    """The process-wide bound on transactions' temporary files is reached; ENOSPC."""


class InvalidHash(StoreError):
    def __init__(self, text: str, detail: str) -> None:
        self.text = text
        self.detail = detail
        super().__init__(f'invalid-hash "{text}": {detail}')


class NotFastForward(StoreError):
    message = "not-fast-forward"


class MergeConflict(StoreError):
    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"Merge conflict: {detail}")


class ConflictsRemain(StoreError):
    """A merge or commit while an earlier merge's conflicts are unresolved."""

    message = "conflicts file is not empty"


class InvalidBranchName(StoreError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"{name} is not a valid branch name.")


class InvalidName(StoreError):
    """A tree entry name git would refuse (``_names.check_name``); EINVAL."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidContent(StoreError):
    """A file git's fsck would refuse, such as a ``.gitmodules`` naming a
    submodule ``../x`` (``_fsck.special_problem``); EINVAL."""


class NameTooLong(StoreError):
    """A name longer than a filesystem or the ref store can hold; ENAMETOOLONG."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class ReadOnlyEntry(StoreError):
    """A write to a submodule entry (gitlink): it can only be removed; EROFS."""

    message = "Read-only file: a submodule (gitlink) can only be removed"


class CorruptTree(StoreError):
    """A stored tree object that cannot be parsed; EIO for that one
    directory, the rest of the branch stays readable."""

    def __init__(self, sha: str, detail: str) -> None:
        self.sha = sha
        super().__init__(f"corrupt tree {sha}: {detail}")


class FetchError(StoreError):
    """One of ``error: no head to fetch`` / ``error: cannot fetch <url>`` /
    ``error: remote url is not defined``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
