"""Registry credentials from the files podman, skopeo and docker already write (spec C.4 step 5).

Users log in with the tools they have (`podman login`, `docker login`); we only
read the plain `auths` entries those write. Credential helpers and identity
tokens are out of scope: such entries are skipped, not misread.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from datakit.images.reference import DOCKER_HUB, DOCKER_HUB_API


class AuthFileError(Exception):
    """An auth file that cannot be read or parsed; one line naming the file."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password in a log or traceback
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def default_auth_files() -> list[Path]:
    """Where credentials are looked for when no --auth-file is given, in order."""
    files: list[Path] = []
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        files.append(Path(env))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        files.append(Path(runtime) / "containers" / "auth.json")
    files.append(Path.home() / ".docker" / "config.json")
    return files


def find_credentials(registry: str, auth_file: str | None = None) -> Credentials | None:
    """Credentials for `registry` (host[:port] as in the image reference), or None.

    `auth_file` given: only that file, which must exist. Otherwise the default
    files in order ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
    ~/.docker/config.json); the first one holding an entry for the registry
    wins (as in containers/image), and a malformed file is an error, not skipped."""
    if auth_file is not None:
        path = Path(auth_file)
        if not path.is_file():
            raise AuthFileError(f"auth file {auth_file}: no such file")
        return _lookup(path, registry)
    for path in default_auth_files():
        if path.is_file():
            found = _lookup(path, registry)
            if found is not None:
                return found
    return None


def _normalize(key: str) -> str:
    """The host[:port] an `auths` key stands for ("https://host/v1/" -> "host")."""
    key = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    if key in ("index.docker.io", DOCKER_HUB_API):
        return DOCKER_HUB
    return key


def _lookup(path: Path, registry: str) -> Credentials | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise AuthFileError(f"auth file {path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise AuthFileError(f"auth file {path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise AuthFileError(f"auth file {path}: not a JSON object")
    auths = data.get("auths", {})
    if not isinstance(auths, dict):
        raise AuthFileError(f'auth file {path}: "auths" is not an object')
    wanted = _normalize(registry)
    # An exact key first, then URL-style keys for the same host.
    keys = [k for k in auths if k == registry] + [
        k for k in auths if k != registry and _normalize(k) == wanted
    ]
    for key in keys:
        entry = auths[key]
        if not isinstance(entry, dict):
            raise AuthFileError(f"auth file {path}: entry {key!r} is not an object")
        creds = _entry_credentials(path, key, entry)
        if creds is not None:
            return creds
    return None


def _entry_credentials(path: Path, key: str, entry: dict[str, object]) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthFileError(
                f'auth file {path}: entry {key!r}: "auth" is not base64 of "user:password"'
            ) from None
        user, colon, password = decoded.partition(":")
        if not colon or not user:
            raise AuthFileError(
                f'auth file {path}: entry {key!r}: "auth" does not decode to "user:password"'
            )
        return Credentials(user, password)
    user_value, password_value = entry.get("username"), entry.get("password")
    if isinstance(user_value, str) and isinstance(password_value, str) and user_value:
        return Credentials(user_value, password_value)
    return None
