"""The names any directory may create or rename to: one path element
(``datakit.pathnames``). The server checks every new name here before a
directory sees it; directories that store Git trees add the stricter rule
of ``datakit.store`` (``.git`` and its variants) themselves.
"""

from __future__ import annotations

import errno

from datakit.pathnames import NAME_MAX, as_bytes, element_problem, invalid_message, too_long_message
from datakit.vfs.errors import FsError


def check_new_name(name: str) -> None:
    """FsError (EINVAL, or ENAMETOOLONG past NAME_MAX bytes) unless ``name``
    is one path element."""
    raw = as_bytes(name)
    reason = element_problem(raw)
    if reason is not None:
        raise FsError(invalid_message(raw, reason), errno.EINVAL)
    if len(raw) > NAME_MAX:
        raise FsError(too_long_message(raw), errno.ENAMETOOLONG)
