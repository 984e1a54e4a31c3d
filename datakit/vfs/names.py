"""The names any directory may create or rename to: one path element.

9p carries names as strings, so a client can ask for "", ".", "..", or a
name holding '/' or NUL. No such entry could ever be walked to, and a
listing holding it would show a Linux client a second "..", or a name cut
at the NUL. The server checks every new name here before a directory sees
it; directories that store Git trees add the stricter rule of
``datakit.store`` (``.git`` and its variants) themselves.
"""

from __future__ import annotations

import errno

from datakit.vfs.errors import FsError

NAME_MAX = 255  # bytes, as statfs reports and Linux allows
_SHOWN_MAX = 64  # the longest name echoed back in an error


def _shown(raw: bytes) -> str:
    return repr(raw[:_SHOWN_MAX])[1:] + ("..." if len(raw) > _SHOWN_MAX else "")


def check_new_name(name: str) -> None:
    """FsError (EINVAL, or ENAMETOOLONG past NAME_MAX bytes) unless ``name``
    is one path element."""
    raw = name.encode("utf-8", "surrogateescape")
    if raw in (b"", b".", b".."):
        reason = "empty name" if not raw else f"{name} is not a file name"
    elif b"/" in raw:
        reason = "a name cannot contain '/'"
    elif b"\0" in raw:
        reason = "a name cannot contain NUL"
    elif len(raw) > NAME_MAX:
        raise FsError(
            f"Name too long ({len(raw)} bytes, at most {NAME_MAX}): {_shown(raw)}",
            errno.ENAMETOOLONG,
        )
    else:
        return
    raise FsError(f"Invalid name {_shown(raw)}: {reason}", errno.EINVAL)
