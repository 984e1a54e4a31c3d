"""OCI image documents: media types, the config and manifest we write, and
reading the manifests and configs we find (ours or anyone's).

Everything we write is serialised once, deterministically (fixed key order,
no whitespace, times from commits rather than the clock), so the same
commits always give the same digests: registries deduplicate and a push of
an unchanged tree is recognised as up to date by digest alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

# Docker's layer media types and the OCI types that describe the same bytes
# (C.3: a base image's layers are re-described, never re-encoded).
_OCI_EQUIVALENT = {
    "application/vnd.docker.image.rootfs.diff.tar": OCI_LAYER_TAR,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": OCI_LAYER_ZSTD,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
}

ANN_CREATED = "org.opencontainers.image.created"
ANN_REVISION = "org.opencontainers.image.revision"
ANN_REF_NAME = "org.opencontainers.image.ref.name"
_OURS = "org.mobyproject.datakit."
ANN_TREE = _OURS + "tree"
ANN_PREFIX = _OURS + "prefix"
ANN_BASE = _OURS + "base"
ANN_COMMIT = _OURS + "commit"
ANN_FROM = _OURS + "from"

MAX_DOCUMENT = 4 * 1024 * 1024
"""Largest manifest or config we read: real ones are a few KiB."""


class ImageFormatError(Exception):
    """A manifest or config that is not what its media type promises."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dump(document: dict[str, Any]) -> bytes:
    """The one serialisation of our documents: compact, key order as built."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, value: object, where: str) -> Descriptor:
        if not isinstance(value, dict):
            raise ImageFormatError(f"{where}: a descriptor must be an object")
        media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
        annotations = value.get("annotations") or {}
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise ImageFormatError(f"{where}: descriptor without mediaType or digest")
        if not valid_digest(digest):
            raise ImageFormatError(f"{where}: unsupported digest {digest[:80]!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageFormatError(f"{where}: descriptor without a valid size")
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise ImageFormatError(f"{where}: annotations must map strings to strings")
        return cls(media_type, digest, size, dict(annotations))

    def as_oci_layer(self) -> Descriptor:
        """The same bytes described with the OCI media type."""
        return Descriptor(
            _OCI_EQUIVALENT.get(self.media_type, self.media_type),
            self.digest,
            self.size,
            self.annotations,
        )


def valid_digest(digest: str) -> bool:
    algorithm, _, hexpart = digest.partition(":")
    return (
        algorithm == "sha256"
        and len(hexpart) == 64
        and all(c in "0123456789abcdef" for c in hexpart)
    )


@dataclass(frozen=True)
class Manifest:
    """An image manifest as read (OCI or Docker schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]

    @property
    def ours(self) -> bool:
        """Made by `datakit image` (it names its tree and commit)."""
        return ANN_TREE in self.annotations and ANN_REVISION in self.annotations

    @property
    def datakit_layers(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in self.layers if ANN_COMMIT in d.annotations)

    @property
    def base_layers(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in self.layers if ANN_COMMIT not in d.annotations)


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_DOCUMENT:
        raise ImageFormatError(f"{what}: larger than {MAX_DOCUMENT} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageFormatError(f"{what}: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise ImageFormatError(f"{what}: not a JSON object")
    return value


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """A manifest's bytes as a Manifest; ImageFormatError if it is an index
    or anything else than a single image's manifest."""
    doc = parse_json(data, "manifest")
    kind = doc.get("mediaType") or media_type or OCI_MANIFEST
    if kind in INDEX_TYPES or "manifests" in doc:
        raise ImageFormatError("the tag holds an image index (several platforms), not one image")
    if kind not in MANIFEST_TYPES:
        raise ImageFormatError(f"manifest of unsupported type {str(kind)[:80]!r}")
    if doc.get("schemaVersion") != 2:
        raise ImageFormatError("manifest schemaVersion is not 2")
    config = Descriptor.from_json(doc.get("config"), "manifest config")
    layers_json = doc.get("layers")
    if not isinstance(layers_json, list):
        raise ImageFormatError("manifest without a layers list")
    layers = tuple(
        Descriptor.from_json(v, f"manifest layer {i + 1}") for i, v in enumerate(layers_json)
    )
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ImageFormatError("manifest annotations must be an object")
    return Manifest(str(kind), config, layers, {str(k): str(v) for k, v in annotations.items()})


def pick_platform(index: bytes, platform: Platform) -> Descriptor:
    """The manifest for ``platform`` in an image index (a multi-platform base)."""
    doc = parse_json(index, "image index")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise ImageFormatError("image index without manifests")
    for i, entry in enumerate(entries):
        plat = entry.get("platform") if isinstance(entry, dict) else None
        if (
            isinstance(plat, dict)
            and plat.get("os") == platform.os
            and plat.get("architecture") == platform.architecture
            and (platform.variant is None or plat.get("variant") == platform.variant)
        ):
            return Descriptor.from_json(entry, f"image index entry {i + 1}")
    raise ImageFormatError(f"the base image has no manifest for {platform}")


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(
                f"{text!r}: a platform is OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class History:
    created: int
    created_by: str
    comment: str


def new_config(platform: Platform) -> dict[str, Any]:
    """The config of an image without a base (C.3)."""
    config: dict[str, Any] = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        config["variant"] = platform.variant
    config["config"] = {}
    config["rootfs"] = {"type": "layers", "diff_ids": []}
    config["history"] = []
    return config


def check_config(config: dict[str, Any], layers: int, what: str) -> None:
    """A config we can extend: it names one DiffID per layer."""
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ImageFormatError(f"{what}: config without rootfs.diff_ids")
    if len(diff_ids) != layers:
        raise ImageFormatError(
            f"{what}: config names {len(diff_ids)} layer DiffIDs, the manifest {layers} layers"
        )
    history = config.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ImageFormatError(f"{what}: config history is not a list of objects")


def with_layers(
    config: dict[str, Any], diff_ids: list[str], history: list[History], created: int
) -> dict[str, Any]:
    """``config`` with the given layers appended: their DiffIDs, one history
    entry each, and the image's creation time."""
    out = json.loads(json.dumps(config))  # a deep copy that stays JSON
    out["rootfs"] = {"type": "layers", "diff_ids": list(out["rootfs"]["diff_ids"]) + diff_ids}
    out["history"] = list(out.get("history", [])) + [
        {"created": rfc3339(h.created), "created_by": h.created_by, "comment": h.comment}
        for h in history
    ]
    out["created"] = rfc3339(created)
    return out


def config_bytes(config: dict[str, Any]) -> bytes:
    # Fixed top-level order so equal content is equal bytes whatever order a
    # base image's config came in.
    order = ["created", "architecture", "os", "variant", "config", "rootfs", "history"]
    doc = {k: config[k] for k in order if k in config}
    doc.update({k: v for k, v in config.items() if k not in doc})
    return dump(doc)


def manifest_bytes(
    config: Descriptor, layers: list[Descriptor], annotations: dict[str, str]
) -> bytes:
    return dump(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layers],
            "annotations": annotations,
        }
    )
