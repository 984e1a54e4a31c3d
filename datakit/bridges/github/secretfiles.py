"""The GitHub token and the webhook secret, read from files (spec §3.1).

Both are refused when the file is readable by group or others: a secret
anyone on the machine can read is no secret, and upstream treated such a
token as missing. Contents are stripped of surrounding whitespace so a file
written with ``echo`` works. The webhook secret file is created (mode 0600,
a new random secret) when it does not exist, so restarts keep the secret
that the registered hooks sign with.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path


class SecretFileError(Exception):
    """A token or secret file that cannot be used; the message is one line."""


def _read_private(path: Path, what: str) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SecretFileError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise SecretFileError(f"{what} {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(f"{what} {path}: not a regular file")
    if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        raise SecretFileError(
            f"{what} {path}: readable by group or others (mode {stat.S_IMODE(st.st_mode):04o});"
            f" run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise SecretFileError(f"{what} {path}: cannot read: {e}") from None
    if not text:
        raise SecretFileError(f"{what} {path}: empty")
    return text


def load_token(path: Path | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The GitHub token from `path` (if given) or else ``GITHUB_TOKEN``;
    None when neither is set (anonymous access)."""
    if path is not None:
        return _read_private(Path(path), "token file")
    token = environ.get("GITHUB_TOKEN", "").strip()
    return token or None


def load_or_create_secret(path: Path) -> bytes:
    """The webhook secret stored in `path`, created with a new random secret
    (mode 0600) when the file does not exist."""
    path = Path(path)
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created by someone else meanwhile: read theirs
        except OSError as e:
            raise SecretFileError(
                f"webhook secret file {path}: cannot create: {e.strerror}"
            ) from None
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(secrets.token_hex(32) + "\n")
    return _read_private(path, "webhook secret file").encode("utf-8")
