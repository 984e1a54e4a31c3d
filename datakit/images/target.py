"""Where an image is written: a tag in a registry or in an OCI image layout.

The incremental build (``build.py``) only needs these few operations, so the
same code decides full, delta or up to date for `image push` and
`image export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class TargetError(Exception):
    """The target cannot be read or written; the message is one line."""


@dataclass(frozen=True)
class Current:
    """The manifest a tag holds now."""

    data: bytes
    media_type: str
    digest: str


class Target(Protocol):
    def __str__(self) -> str: ...

    def current(self) -> Current | None:
        """The manifest at the tag, None if there is none."""

    def read_blob(self, digest: str, max_size: int) -> bytes:
        """A small blob (a config), checked against its digest."""

    def has_blob(self, digest: str) -> bool: ...

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Make a blob of another repository of the same registry ours
        without sending it; False if the target cannot."""

    def put_blob_file(self, digest: str, source: Path) -> bool:
        """Store a blob from a file unless present; True if bytes were sent."""

    def put_blob_bytes(self, digest: str, data: bytes) -> bool: ...

    def put_manifest(self, data: bytes, media_type: str) -> str:
        """Point the tag at this manifest (written last); returns its digest."""
