"""An OCI image layout on disk as a place to write images (`image export`).

The layout may hold other tags: we only ever add blobs and replace the one
index entry whose ``org.opencontainers.image.ref.name`` is our tag, and
index.json is replaced atomically, so an interrupted export leaves the
previous state readable. Blobs no longer referenced are left in place (as
`skopeo copy` does); a registry-style garbage collection is out of scope.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from datakit.images.oci import (
    ANN_REF_NAME,
    MAX_DOCUMENT,
    Descriptor,
    ImageFormatError,
    digest_of,
    dump,
    parse_json,
    valid_digest,
)
from datakit.images.reference import valid_tag
from datakit.images.target import Current, TargetError

log = logging.getLogger(__name__)

_LAYOUT_FILE = "oci-layout"
_INDEX = "index.json"


def split_layout(text: str) -> tuple[Path, str]:
    """``DIR[:TAG]`` as (directory, tag); the tag defaults to ``latest``.

    Whatever follows the last colon of the last path component is the tag,
    and must be a valid one: a typo is refused rather than taken as part of
    a directory name (a directory whose name has a colon: add ``:latest``).
    """
    directory, sep, tag = text.rpartition(":")
    if not sep or "/" in tag:
        return Path(text), "latest"
    if not directory or not valid_tag(tag):
        raise TargetError(
            f"{text}: {tag!r} is not a valid tag (letters, digits, _ . -, at most 128, "
            "not starting with . or -)"
        )
    return Path(directory), tag


def _ref_name(entry: object) -> object:
    """An index entry's tag, None if it has none (or is not an object)."""
    if not isinstance(entry, dict):
        return None
    annotations = entry.get("annotations")
    return annotations.get(ANN_REF_NAME) if isinstance(annotations, dict) else None


class LayoutTarget:
    """The image at one tag of an OCI image layout directory."""

    def __init__(self, directory: Path, tag: str) -> None:
        self.directory = directory
        self.tag = tag
        if directory.exists():
            if not directory.is_dir():
                raise TargetError(f"{directory}: not a directory")
            ours = (p for p in directory.iterdir() if not p.name.startswith(".tmp-"))
            if any(ours) and not (directory / _LAYOUT_FILE).is_file():
                raise TargetError(f"{directory}: exists and is not an OCI image layout")

    def __str__(self) -> str:
        return f"oci:{self.directory}:{self.tag}"

    def _blob_path(self, digest: str) -> Path:
        if not valid_digest(digest):
            raise TargetError(f"{self}: unsupported digest {digest[:80]!r}")
        return self.directory / "blobs" / "sha256" / digest.split(":", 1)[1]

    def _index(self) -> dict[str, Any]:
        path = self.directory / _INDEX
        if not path.is_file():
            return {"schemaVersion": 2, "manifests": []}
        try:
            index = parse_json(path.read_bytes(), str(path))
        except (OSError, ImageFormatError) as e:
            raise TargetError(f"{path}: unreadable image index: {e}") from None
        if not isinstance(index.get("manifests"), list):
            raise TargetError(f"{path}: an image index without a manifests list")
        return index

    def current(self) -> Current | None:
        entries = [m for m in self._index()["manifests"] if _ref_name(m) == self.tag]
        if not entries:
            return None
        try:
            desc = Descriptor.from_json(entries[-1], f"{self} index entry")
        except ImageFormatError as e:
            raise TargetError(str(e)) from None
        if not self.has_blob(desc.digest):
            # A tag naming a manifest that is gone holds nothing to build on:
            # the export writes it anew (full), as for a missing layer.
            log.warning("%s: its manifest %s is missing; writing a full image", self, desc.digest)
            return None
        data = self.read_blob(desc.digest, MAX_DOCUMENT)
        return Current(data, desc.media_type, desc.digest)

    def read_blob(self, digest: str, max_size: int) -> bytes:
        path = self._blob_path(digest)
        try:
            if path.stat().st_size > max_size:
                raise TargetError(f"{self}: blob {digest} is larger than {max_size} bytes")
            data = path.read_bytes()
        except OSError as e:
            raise TargetError(f"{self}: cannot read blob {digest}: {e.strerror}") from None
        if digest_of(data) != digest:
            raise TargetError(f"{self}: blob {digest} does not match its digest")
        return data

    def has_blob(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def _init(self) -> None:
        # The marker first: another export starting now must see a layout
        # (or only our temporary file), never a bare blobs/ directory.
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / _LAYOUT_FILE
        if not marker.exists():
            self._write(marker, dump({"imageLayoutVersion": "1.0.0"}))
        (self.directory / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def _write(self, path: Path, data: bytes) -> None:
        self._write_with(path, lambda out: out.write(data))

    @staticmethod
    def _write_with(path: Path, fill: Callable[[BinaryIO], object]) -> None:
        """Write ``path`` whole or not at all: a temporary file beside it,
        synced, renamed over it."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        return False  # one layout, one repository

    def put_blob_file(self, digest: str, source: Path) -> bool:
        """Copy a blob in; False if it was already there."""
        target = self._blob_path(digest)
        if target.is_file():
            return False
        self._init()
        with source.open("rb") as src:
            self._write_with(target, lambda out: shutil.copyfileobj(src, out, 1024 * 1024))
        return True

    def put_blob_bytes(self, digest: str, data: bytes) -> bool:
        target = self._blob_path(digest)
        if target.is_file():
            return False
        self._init()
        self._write(target, data)
        return True

    def put_manifest(self, data: bytes, media_type: str) -> str:
        digest = digest_of(data)
        self.put_blob_bytes(digest, data)
        # index.json is read, changed and replaced: exports of other tags at
        # the same time must wait their turn or one would lose the other's.
        with self._locked():
            index = self._index()
            manifests = [m for m in index["manifests"] if _ref_name(m) != self.tag]
            manifests.append(
                Descriptor(media_type, digest, len(data), {ANN_REF_NAME: self.tag}).to_json()
            )
            index["manifests"] = manifests
            index.setdefault("schemaVersion", 2)
            self._write(self.directory / _INDEX, json.dumps(index, indent=2).encode() + b"\n")
        return digest

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on the layout: flock on its directory, so that
        no file of ours is added to the layout."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
