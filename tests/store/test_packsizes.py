"""The size walk of a received pack (``_packsizes``): packs git writes
(with deltas) pass; a pack that lies about its sizes or its object count,
or is cut short, is refused with a reason; a delta making an object over
the limit is refused before anything is inflated whole."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from datakit.store._packsizes import PackSizeError, check_sizes
from tests.gitrepo import git, git_bytes


@pytest.fixture(scope="module")
def git_pack(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A pack `git pack-objects` writes of 30 versions of a 40 KiB file:
    deltas against each other."""
    repo = tmp_path_factory.mktemp("deltas")
    git(repo, "init", "-q", "-b", "master", str(repo))
    text = b"".join(b"line %d\n" % i for i in range(5000))
    for i in range(30):
        (repo / "f").write_bytes(text + b"version %d\n" % i)
        git(repo, "add", "f")
        git(repo, "commit", "-q", "-m", f"v{i}")
    pack = git_bytes(repo, "pack-objects", "--stdout", "--revs", input=b"master\n")
    return pack


def _write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "p.pack"
    path.write_bytes(data)
    return str(path)


def test_git_packs_pass(git_pack: bytes, tmp_path: Path) -> None:
    check_sizes(_write(tmp_path, git_pack), 1 << 20)


def test_a_delta_making_a_big_object_is_refused(git_pack: bytes, tmp_path: Path) -> None:
    """The file is 40 KiB: its deltas are small, what they make is not."""
    with pytest.raises(PackSizeError, match="larger than 30000 bytes"):
        check_sizes(_write(tmp_path, git_pack), 30000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: p[:8] + struct.pack(">I", 10**6) + p[12:], "malformed pack|truncated"),
        (lambda p: p[: len(p) // 2], "truncated|malformed pack"),
        (lambda p: b"KCAP" + p[4:], "not a pack"),
        (lambda p: p[:12] + bytes([p[12] ^ 0x01]) + p[13:], "declared size|malformed"),
    ],
)
def test_lies_are_refused(git_pack: bytes, tmp_path: Path, change, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PackSizeError, match=reason):
        check_sizes(_write(tmp_path, change(git_pack)), 1 << 20)
