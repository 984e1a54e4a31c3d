"""The errors of the client API, identical for both backends.

Upstream's two backends disagree on error values (the 9p one turns most
server replies into an opaque ``IO`` string, the Git one has its own set).
Here every failure a caller may want to handle has its own class, and both
backends raise the same class for the same situation, so ``except
DoesNotExist`` works whichever backend is in use. ``str(error)`` is the
upstream wording.
"""

from __future__ import annotations


class DataKitError(Exception):
    """Base class of every error the client API raises on purpose.

    Transport failures (a refused or dropped connection) are ``OSError``s,
    not DataKitErrors: they say nothing about the data.
    """

    default_message = "DataKit error"

    def __init__(self, message: str | None = None) -> None:
        self.message = self.default_message if message is None else message
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class DoesNotExist(DataKitError):
    """The path, branch, commit or tree does not exist."""

    default_message = "No such file or directory"


class AlreadyExists(DataKitError):
    default_message = "Already exists"


class IsADirectory(DataKitError):
    """A directory was used where a file was needed."""

    default_message = "Is a directory"


class NotADirectory(DataKitError):
    """A file was used where a directory was needed."""

    default_message = "Not a directory"


class NotAFile(DataKitError):
    """``read_file`` on a directory or a symlink."""

    default_message = "Not a file"


class NotASymlink(DataKitError):
    default_message = "Not a symlink"


class TransactionClosed(DataKitError):
    """The transaction was committed or aborted already."""

    default_message = "Transaction is closed"


class ConflictsRemain(DataKitError):
    """A commit or merge was attempted while merge conflicts are unresolved."""

    default_message = "conflicts file is not empty"


class Conflict(DataKitError):
    """Committing needed an automatic merge with the branch's new head, and
    that merge conflicted. The transaction stays open: merge the branch head
    into it, resolve, and commit again (or abort)."""

    default_message = "conflict"


class NotFastForward(DataKitError):
    """``fast_forward`` to a commit that does not descend from the head."""

    default_message = "not-fast-forward"


class InvalidHash(DataKitError, ValueError):
    """A commit or tree id that is not 40 hexadecimal digits."""

    default_message = "invalid hash"


class InvalidBranchName(DataKitError, ValueError):
    default_message = "invalid branch name"


class InvalidPath(DataKitError, ValueError):
    """A path step that is empty, ``.``, ``..`` or contains ``/``."""

    default_message = "invalid path"


class InvalidName(InvalidPath):
    """A name a file or directory may not be created with: one git refuses
    to store (``.git`` in any case and the forms Windows and macOS read as
    ``.git``, ``git~1`` ...), or ``.gitmodules`` as a symlink."""

    default_message = "invalid name"


class NameTooLong(DataKitError, ValueError):
    """A name longer than a filesystem (255 bytes) or the ref store can hold."""

    default_message = "name too long"


class FetchFailed(DataKitError):
    """The remote could not be reached or has no such branch."""

    default_message = "fetch failed"


class BackendError(DataKitError):
    """Any other failure reported by the server or the repository (upstream's
    ``IO`` / ``Msg`` errors). ``errno`` is the server's errno when known."""

    default_message = "backend error"

    def __init__(self, message: str | None = None, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno
