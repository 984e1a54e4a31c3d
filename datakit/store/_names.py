"""Which tree entry names may be stored: exactly those `git fsck --strict`
accepts and a checkout on Linux can materialise.

This is the one place the rule lives. Every path that builds a tree (the
editable tree of a transaction, merge results, fetched objects, both client
backends) asks :func:`check_name`, so nothing git would refuse is ever
stored. The checks follow git's ``fsck.c`` and ``path.c`` (``verify_path``,
``is_hfs_dotgit``, ``is_ntfs_dotgit``): fsck applies the HFS+ and NTFS
variants on every platform, because a repository may be cloned anywhere.

Names are ``str`` in the store, with bytes that are not UTF-8 carried as
surrogate escapes (see ``_objects.encode_name``); the checks run on the
bytes git would see.
"""

from __future__ import annotations

from datakit.pathnames import (
    NAME_MAX,
    as_bytes,
    element_problem,
    invalid_message,
    shown,
    too_long_message,
)

from ._errors import InvalidName, NameTooLong

# NAME_MAX: a path component longer than this cannot be created by a checkout
# on Linux filesystems; git stores it, but it could never be materialised.

# Code points HFS+ ignores when comparing names (git's is_hfs_dotgit): a name
# like ".g\u200cit" is ".git" on a Mac.
_HFS_IGNORABLE = frozenset(
    [*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)


def shown_name(name: str | bytes) -> str:
    """A name as an error message may quote it: bounded, printable."""
    return shown(as_bytes(name))


def _only_spaces_and_periods(rest: bytes) -> bool:
    return all(c in b" ." for c in rest)


def is_ntfs_dotgit(raw: bytes) -> bool:
    """True if NTFS would open ``.git`` for this name: the name up to the
    first backslash or colon (an alternate data stream) is ``.git`` or its
    8.3 short name ``git~1``, case-insensitively, followed only by spaces
    and dots."""
    end = len(raw)
    for sep in (b"\\", b":"):
        pos = raw.find(sep)
        if pos >= 0:
            end = min(end, pos)
    head = raw[:end].lower()
    for prefix in (b".git", b"git~1"):
        if head.startswith(prefix) and _only_spaces_and_periods(head[len(prefix) :]):
            return True
    return False


def ntfs_parts(raw: bytes) -> list[bytes]:
    """The name, and what follows each backslash in it: NTFS treats a
    backslash as a separator, so git's fsck checks each part as if it began
    a name."""
    return [raw, *(raw[i + 1 :] for i in range(len(raw)) if raw[i] == 0x5C)]


def _spaces_and_periods_to_stream(raw: bytes, start: int) -> bool:
    """Only spaces and periods from ``start`` to the end or to a ``:`` (an
    alternate data stream): NTFS drops them."""
    end = raw.find(b":", start)
    return _only_spaces_and_periods(raw[start:] if end < 0 else raw[start:end])


def _hashed_short_name_end(raw: bytes, prefix: bytes) -> int:
    """Where the rest begins if ``raw`` starts with the hashed 8.3 short name
    NTFS may give a long name: up to 6 letters of ``prefix``, ``~``, a digit
    1-9 and more digits, 8 characters in all (git's fall-back rule); else -1."""
    tilde = raw.find(b"~", 0, 7)
    if tilde < 0 or not raw[:tilde].isascii() or raw[:tilde].lower() != prefix[:tilde]:
        return -1
    digits = raw[tilde + 1 : 8]
    if len(digits) != 7 - tilde or not digits.isdigit() or digits.startswith(b"0"):
        return -1
    return 8


def is_ntfs_dotfile(raw: bytes, base: bytes, hashed_prefix: bytes) -> bool:
    """True if NTFS would open ``.<base>`` (``base`` without its dot, lower
    case, like ``gitmodules``) for this name, as git's ``is_ntfs_dot_generic``
    decides: ``.<base>`` in any case, its short names ``<base[:6]>~1`` to
    ``~4``, or the hashed short name ``hashed_prefix`` gives (``gi7eba`` for
    gitmodules), each followed only by spaces and periods up to the end or
    a ``:``. (``.git`` itself is :func:`is_ntfs_dotgit`: only ``git~1``.)"""
    lower = raw.lower()
    if lower.startswith(b"." + base):
        return _spaces_and_periods_to_stream(raw, len(base) + 1)
    if lower[:6] == base[:6] and lower[6:7] == b"~" and lower[7:8] in (b"1", b"2", b"3", b"4"):
        return _spaces_and_periods_to_stream(raw, 8)
    end = _hashed_short_name_end(raw, hashed_prefix)
    return end >= 0 and _spaces_and_periods_to_stream(raw, end)


def is_ntfs_dotgitmodules(raw: bytes) -> bool:
    return is_ntfs_dotfile(raw, b"gitmodules", b"gi7eba")


def is_hfs_dotgit(raw: bytes, base: str = ".git") -> bool:
    """True if HFS+ would open ``.git`` (or ``base``) for this name: the same
    letters in any case once the code points HFS+ ignores are dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    folded = "".join(c for c in text if ord(c) not in _HFS_IGNORABLE)
    return folded.isascii() and folded.lower() == base


GITMODULES, GITATTRIBUTES = ".gitmodules", ".gitattributes"


def _plain(raw: bytes) -> bool:
    """The common name, decided fast (checking a tree asks for every entry):
    being refused, or read as .gitmodules/.gitattributes, needs an empty
    name, a leading '.', 'g', 'G' or '~' (a short name NTFS may give
    .gitmodules), a '/', '\\' or NUL, or non-ASCII bytes (HFS+ ignorable
    code points)."""
    return bool(raw) and raw[0] not in b".gG~" and raw.isascii() and not any(
        c in raw for c in b"/\\\0"
    )


def special_file(name: str | bytes) -> str | None:
    """``.gitmodules`` or ``.gitattributes`` if a checkout (on any OS) would
    read this entry as that file: git's fsck then checks its content, and
    refuses it unless it is a blob (and, for .gitmodules, no symlink)."""
    raw = as_bytes(name)
    if _plain(raw):
        return None
    if is_hfs_dotgit(raw, GITMODULES) or any(map(is_ntfs_dotgitmodules, ntfs_parts(raw))):
        return GITMODULES
    if is_hfs_dotgit(raw, GITATTRIBUTES) or is_ntfs_dotfile(raw, b"gitattributes", b"gi7d29"):
        return GITATTRIBUTES
    return None


def problem(name: str | bytes, *, symlink: bool = False, directory: bool = False) -> str | None:
    """Why ``name`` may not be stored as a tree entry, or None if it may;
    ``symlink``/``directory``: the entry is a symbolic link / not a blob."""
    raw = as_bytes(name)
    if _plain(raw):
        return None
    reason = element_problem(raw)
    if reason is not None:
        return reason
    parts = ntfs_parts(raw)
    if is_hfs_dotgit(raw) or any(is_ntfs_dotgit(p) for p in parts):
        return "git reserves the name .git (in any case, and its NTFS and HFS+ forms)"
    special = special_file(raw) if symlink or directory else None
    if special == GITMODULES and symlink:
        return ".gitmodules cannot be a symbolic link"
    if special is not None and directory:
        return f"{special} must be a file"
    return None


def check_name(name: str | bytes, *, symlink: bool = False, directory: bool = False) -> None:
    """Raise :class:`InvalidName` (EINVAL) or :class:`NameTooLong`
    (ENAMETOOLONG) unless ``name`` may be stored as a tree entry;
    ``symlink``: the entry is a symbolic link, ``directory``: a directory."""
    reason = problem(name, symlink=symlink, directory=directory)
    raw = as_bytes(name)
    if reason is not None:
        raise InvalidName(invalid_message(raw, reason))
    if len(raw) > NAME_MAX:
        raise NameTooLong(too_long_message(raw))
