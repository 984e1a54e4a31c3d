"""The incremental image build (spec C.3, C.4): read what the tag holds,
decide full, delta or up to date, write the blobs, then the manifest last.

Because the manifest is written last and only after every blob it names is
in place, an error or an interruption at any point leaves the tag as it was.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datakit.client import Commit, Connection, DataKitError
from datakit.images.layers import Layer, delta_layer, full_layer, normalize_prefix
from datakit.images.oci import (
    ANN_BASE,
    ANN_COMMIT,
    ANN_CREATED,
    ANN_FROM,
    ANN_PREFIX,
    ANN_REVISION,
    ANN_TREE,
    MAX_DOCUMENT,
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    History,
    ImageFormatError,
    Manifest,
    Platform,
    check_config,
    config_bytes,
    digest_of,
    manifest_bytes,
    new_config,
    parse_json,
    parse_manifest,
    rfc3339,
    with_layers,
)
from datakit.images.target import Current, Target, TargetError

log = logging.getLogger(__name__)

DEFAULT_MAX_LAYERS = 64


@dataclass(frozen=True)
class BaseImage:
    """The image our layers go on top of (``--base``), already read."""

    name: str  # as given, for messages
    digest: str  # its manifest digest, recorded in our manifest
    manifest: Manifest
    config: dict[str, Any]
    repository: str | None  # for cross-repository mounts (same registry only)
    fetch: Callable[[Descriptor, Path], None] | None = None
    """Copies a layer blob into a local file when the target lacks it and
    cannot mount it."""


@dataclass(frozen=True)
class Options:
    prefix: str = "/"
    platform: Platform = field(default_factory=Platform)
    max_layers: int = DEFAULT_MAX_LAYERS
    full: bool = False
    compression: str = "gzip"
    mtime_from_commit: bool = False
    opaque_threshold: int | None = None
    base: BaseImage | None = None


@dataclass(frozen=True)
class Outcome:
    digest: str
    how: str  # "full", "full (why)", "delta from <id>", "up to date", "re-tagged"
    bytes_sent: int = 0
    layer: Layer | None = None

    def __str__(self) -> str:
        return f"{self.digest} {self.how}"


class _Full(Exception):
    """Why the tag's image cannot be continued; the build falls back to full."""


@dataclass(frozen=True)
class _Previous:
    """The tag's image, ours, continued by a delta."""

    current_digest: str
    manifest: Manifest
    config: dict[str, Any]
    commit: Commit


def prefix_text(prefix: str) -> str:
    """The prefix as recorded in our annotation: ``/`` or ``/a/b``."""
    return "/" + normalize_prefix(prefix)


def build(
    db: Connection,
    commit: Commit,
    target: Target,
    options: Options,
    warn: Callable[[str], None] = log.warning,
) -> Outcome:
    """Write the image of ``commit`` to ``target`` and say how."""
    base_digest = options.base.digest if options.base else "none"
    why_full = ""
    previous: _Previous | None = None
    current = target.current()
    if options.full:
        why_full = "--full"
    elif current is not None:
        try:
            previous = _previous(db, current, target, options, base_digest)
        except _Full as e:
            why_full = str(e)

    if previous is not None:
        if previous.commit.tree_id == commit.tree_id:
            return _same_tree(commit, previous, target, options, base_digest)
        layers = len(previous.manifest.datakit_layers) + 1
        if layers > options.max_layers:
            why_full = f"{layers} layers would be more than --max-layers {options.max_layers}"
            previous = None
    with tempfile.TemporaryDirectory(prefix="datakit-image-") as tmp:
        workdir = Path(tmp)
        if previous is not None:
            return _delta(commit, previous, target, options, base_digest, workdir, warn)
        return _full(commit, target, options, base_digest, why_full, workdir, warn)


def _previous(
    db: Connection, current: Current, target: Target, options: Options, base_digest: str
) -> _Previous:
    try:
        manifest = parse_manifest(current.data, current.media_type)
    except ImageFormatError as e:
        raise _Full(f"the tag holds something else: {e}") from None
    if not manifest.ours:
        raise _Full("the tag holds an image not made by datakit image")
    ann = manifest.annotations
    if ann.get(ANN_PREFIX, "/") != prefix_text(options.prefix):
        raise _Full(f"the tag's image has its files under {_quote(ann.get(ANN_PREFIX, ''))}")
    if ann.get(ANN_BASE, "none") != base_digest:
        raise _Full(f"the tag's image was made on base {_quote(ann.get(ANN_BASE, ''))}")
    layers = manifest.datakit_layers
    revision = ann[ANN_REVISION]
    commit = known_commit(db, revision)
    if commit is None:
        raise _Full(f"its commit {_quote(revision)} is not in this database")
    if commit.tree_id != ann.get(ANN_TREE):
        raise _Full(f"its commit {revision} does not have the tree it names")
    # The layers must bring the tree to the revision's: the last one is of
    # the revision itself, or (after a re-tag) of a commit with its tree.
    last = layers[-1].annotations.get(ANN_COMMIT, "") if layers else ""
    if last != revision:
        last_commit = known_commit(db, last)
        if last_commit is None or last_commit.tree_id != commit.tree_id:
            raise _Full("the tag's image does not end with a layer of its tree")
    if not target.has_blob(manifest.config.digest):
        raise _Full(f"the config {manifest.config.digest} of the tag's image is missing")
    try:
        config = parse_json(target.read_blob(manifest.config.digest, MAX_DOCUMENT), "config")
        check_config(config, len(manifest.layers), "the tag's image")
    except ImageFormatError as e:
        raise _Full(str(e)) from None
    if options.base is None:
        # Without a base the platform is ours to set (with one, the base's
        # digest above already changes with the platform chosen).
        was = Platform(
            str(config.get("os")), str(config.get("architecture")), config.get("variant")
        )
        if was != options.platform:
            raise _Full(f"the tag's image is for {_quote(str(was))}")
    missing = [d.digest for d in manifest.layers if not target.has_blob(d.digest)]
    if missing:
        raise _Full(f"layer {missing[0]} of the tag's image is missing")
    return _Previous(current.digest, manifest, config, commit)


def known_commit(db: Connection, id: str) -> Commit | None:
    """The commit ``id`` if this database has it; None for an id that is
    malformed or unknown (ids come from users and registries)."""
    try:
        commit = db.commit(id)
        commit.tree_id  # noqa: B018 - reads the commit: it must exist here
    except DataKitError:  # InvalidHash included
        return None
    return commit


def _quote(text: str) -> str:
    """Text read from a registry, safe in our one-line output."""
    shown = repr(text[:80])[1:-1]
    return shown + "..." if len(text) > 80 else shown


def _annotations(commit: Commit, options: Options, base_digest: str) -> dict[str, str]:
    return {
        ANN_CREATED: rfc3339(commit.time),
        ANN_REVISION: commit.id,
        ANN_TREE: commit.tree_id,
        ANN_PREFIX: prefix_text(options.prefix),
        ANN_BASE: base_digest,
    }


def _history(commit: Commit) -> History:
    first_line = commit.message.split("\n", 1)[0]
    return History(commit.time, f"datakit commit {commit.id}", first_line)


def _layer_descriptor(layer: Layer, commit: Commit, parent: Commit | None) -> Descriptor:
    annotations = {ANN_COMMIT: commit.id}
    if parent is not None:
        annotations[ANN_FROM] = parent.id
    return Descriptor(layer.media_type, layer.digest, layer.size, annotations)


def _same_tree(
    commit: Commit, previous: _Previous, target: Target, options: Options, base_digest: str
) -> Outcome:
    """Nothing to upload: the tag already has these files."""
    manifest = previous.manifest
    data = manifest_bytes(
        manifest.config, list(manifest.layers), _annotations(commit, options, base_digest)
    )
    if digest_of(data) == previous.current_digest:
        return Outcome(previous.current_digest, "up to date")
    if previous.commit.id == commit.id:
        # Same commit, same files, but not our bytes (another version of us,
        # or a manifest rewritten on the way): nothing to redo.
        return Outcome(previous.current_digest, "up to date")
    return Outcome(target.put_manifest(data, OCI_MANIFEST), "re-tagged")


def _write(
    target: Target,
    options: Options,
    layers: list[Descriptor],
    new_layer: Layer,
    config: dict[str, Any],
    annotations: dict[str, str],
) -> tuple[str, int]:
    """Blobs, then the manifest; returns (digest, bytes sent)."""
    sent = 0
    base = options.base
    if base is not None:
        for desc in base.manifest.layers:
            sent += _put_base_layer(target, base, desc, new_layer.path.parent)
    if target.put_blob_file(new_layer.digest, new_layer.path):
        sent += new_layer.size
    config_data = config_bytes(config)
    config_desc = Descriptor(OCI_CONFIG, digest_of(config_data), len(config_data))
    if target.put_blob_bytes(config_desc.digest, config_data):
        sent += len(config_data)
    data = manifest_bytes(config_desc, layers, annotations)
    digest = target.put_manifest(data, OCI_MANIFEST)
    return digest, sent + len(data)


def _put_base_layer(target: Target, base: BaseImage, desc: Descriptor, workdir: Path) -> int:
    """Put one base layer in the target's repository: already there, mounted
    from the base's repository, or copied through a local file."""
    if target.has_blob(desc.digest):
        return 0
    if base.repository is not None and target.mount_blob(desc.digest, base.repository):
        return 0
    if base.fetch is None:
        raise TargetError(f"{target}: base layer {desc.digest} cannot be copied there")
    local = workdir / desc.digest.replace(":", "-")
    try:
        base.fetch(desc, local)
        target.put_blob_file(desc.digest, local)
        return local.stat().st_size
    finally:
        local.unlink(missing_ok=True)


def _delta(
    commit: Commit,
    previous: _Previous,
    target: Target,
    options: Options,
    base_digest: str,
    workdir: Path,
    warn: Callable[[str], None],
) -> Outcome:
    parent = previous.commit
    layer = delta_layer(
        parent,
        commit,
        prefix=options.prefix,
        workdir=workdir,
        compression=options.compression,
        mtime=commit.time if options.mtime_from_commit else 0,
        opaque_threshold=options.opaque_threshold,
        warn=warn,
    )
    config = with_layers(
        previous.config,
        [layer.diff_id],
        [_history(commit)],
        max(commit.time, parent.time),
    )
    layers = [*previous.manifest.layers, _layer_descriptor(layer, commit, parent)]
    digest, sent = _write(
        target,
        dataclasses.replace(options, base=None),  # its base layers are in place
        layers,
        layer,
        config,
        _annotations(commit, options, base_digest),
    )
    return Outcome(digest, f"delta from {parent.id}", sent, layer)


def _full(
    commit: Commit,
    target: Target,
    options: Options,
    base_digest: str,
    why: str,
    workdir: Path,
    warn: Callable[[str], None],
) -> Outcome:
    layer = full_layer(
        commit,
        prefix=options.prefix,
        workdir=workdir,
        compression=options.compression,
        mtime=commit.time if options.mtime_from_commit else 0,
        warn=warn,
    )
    base = options.base
    if base is not None:
        config = base.config
        base_layers = [d.as_oci_layer() for d in base.manifest.layers]
    else:
        config = new_config(options.platform)
        base_layers = []
    config = with_layers(config, [layer.diff_id], [_history(commit)], commit.time)
    layers = [*base_layers, _layer_descriptor(layer, commit, None)]
    digest, sent = _write(
        target, options, layers, layer, config, _annotations(commit, options, base_digest)
    )
    return Outcome(digest, f"full ({why})" if why else "full", sent, layer)
