"""A tag in a registry as a target, and a base image read from a registry."""

from __future__ import annotations

import io
from pathlib import Path

from datakit.images.build import BaseImage
from datakit.images.oci import (
    INDEX_TYPES,
    MAX_DOCUMENT,
    Descriptor,
    ImageFormatError,
    Platform,
    check_config,
    parse_json,
    parse_manifest,
    pick_platform,
)
from datakit.images.progress import Progress
from datakit.images.reference import ImageRef
from datakit.images.registry import Registry
from datakit.images.target import Current, TargetError


class RegistryTarget:
    """The tag ``ref`` of a registry."""

    def __init__(self, registry: Registry, ref: ImageRef, progress: Progress | None = None) -> None:
        if ref.tag is None:
            raise TargetError(f"{ref}: push to a tag, not to a digest")
        self.registry = registry
        self.ref = ref
        self.repository = ref.repository
        self.progress = progress

    def __str__(self) -> str:
        return str(self.ref)

    def current(self) -> Current | None:
        found = self.registry.get_manifest(self.repository, self.ref.reference)
        if found is None:
            return None
        return Current(found.data, found.media_type, found.digest)

    def read_blob(self, digest: str, max_size: int) -> bytes:
        return self.registry.get_blob(self.repository, digest, max_size=max_size)

    def has_blob(self, digest: str) -> bool:
        return self.registry.has_blob(self.repository, digest)

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        if from_repository == self.repository:
            return False
        return self.registry.mount_blob(self.repository, digest, from_repository)

    def put_blob_file(self, digest: str, source: Path) -> bool:
        if self.registry.has_blob(self.repository, digest):
            return False
        size = source.stat().st_size
        if self.progress:
            self.progress.start(size)
        with source.open("rb") as f:
            self.registry.upload_blob(self.repository, digest, size, f)
        return True

    def put_blob_bytes(self, digest: str, data: bytes) -> bool:
        if self.registry.has_blob(self.repository, digest):
            return False
        self.registry.upload_blob(self.repository, digest, len(data), io.BytesIO(data))
        return True

    def put_manifest(self, data: bytes, media_type: str) -> str:
        assert self.ref.tag is not None
        return self.registry.put_manifest(self.repository, self.ref.tag, data, media_type)


def load_base(
    registry: Registry, ref: ImageRef, platform: Platform, *, same_registry: bool
) -> BaseImage:
    """Read the base image ``ref`` (its platform's manifest if it is an index)."""
    found = registry.get_manifest(ref.repository, ref.reference)
    if found is None:
        raise TargetError(f"base image {ref}: not found")
    data, media_type, digest = found.data, found.media_type, found.digest
    try:
        if media_type in INDEX_TYPES or b'"manifests"' in data:
            chosen = pick_platform(data, platform)
            found = registry.get_manifest(ref.repository, chosen.digest)
            if found is None:
                raise TargetError(f"base image {ref}: manifest {chosen.digest} not found")
            data, media_type, digest = found.data, found.media_type, found.digest
        manifest = parse_manifest(data, media_type)
        config = parse_json(
            registry.get_blob(ref.repository, manifest.config.digest, max_size=MAX_DOCUMENT),
            f"base image {ref} config",
        )
        check_config(config, len(manifest.layers), f"base image {ref}")
    except ImageFormatError as e:
        raise TargetError(f"base image {ref}: {e}") from None

    def fetch(desc: Descriptor, dest: Path) -> None:
        registry.download_blob(ref.repository, desc.digest, dest)

    return BaseImage(
        name=str(ref),
        digest=digest,
        manifest=manifest,
        config=config,
        repository=ref.repository if same_registry else None,
        fetch=fetch,
    )
