"""What one path element may be, whatever a directory holds.

A 9p client sends names as strings, so it can ask for "", ".", "..", or a
name holding '/' or NUL: no such entry could ever be walked to, and a
listing holding it would show a Linux client a second "..", or a name cut
at the NUL. Longer than NAME_MAX bytes, Linux cannot create it. The server
checks every new name with this rule (``datakit.server.names``); the store's
rule for tree entries (``datakit.store._names``) starts from it and adds
git's own (``.git`` and its variants).

Pure functions on bytes, imported by layers that may not import each other.
"""

from __future__ import annotations

NAME_MAX = 255  # bytes, as statfs reports and Linux allows
_SHOWN_MAX = 64  # the longest name echoed back in an error message


def as_bytes(name: str | bytes) -> bytes:
    """A name as the bytes it stands for (non-UTF-8 bytes travel as
    surrogate escapes in ``str``)."""
    return name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")


def shown(raw: bytes) -> str:
    """The name as an error message may quote it: bounded, printable."""
    return repr(raw[:_SHOWN_MAX])[1:] + ("..." if len(raw) > _SHOWN_MAX else "")


def element_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not one path element, or None if it is (its length
    aside: see NAME_MAX)."""
    if raw == b"":
        return "empty name"
    if raw in (b".", b".."):
        return f"{raw.decode()} is not a file name"
    if b"/" in raw:
        return "a name cannot contain '/'"
    if b"\0" in raw:
        return "a name cannot contain NUL"
    return None


def invalid_message(raw: bytes, reason: str) -> str:
    return f"Invalid name {shown(raw)}: {reason}"


def too_long_message(raw: bytes) -> str:
    return f"Name too long ({len(raw)} bytes, at most {NAME_MAX}): {shown(raw)}"
