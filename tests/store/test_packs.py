"""Packs written by the store are packs git reads, byte for byte."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from datakit.store._objects import BLOB, COMMIT, TREE, hash_object
from datakit.store._packs import install_pack, write_pack


def objects() -> list[tuple[str, int, bytes]]:
    blobs = [b"", b"x", b"fifteen bytes!!", b"sixteen bytes!!!", bytes(range(256)) * 300]
    out = [(hash_object(BLOB, b), BLOB, b) for b in blobs]
    tree = b"100644 a\0" + bytes.fromhex(out[1][0])
    out.append((hash_object(TREE, tree), TREE, tree))
    commit = (
        b"tree " + out[-1][0].encode() + b"\n"
        b"author a <a@b> 0 +0000\ncommitter a <a@b> 0 +0000\n\nmsg\n"
    )
    out.append((hash_object(COMMIT, commit), COMMIT, commit))
    return out


def _offsets(idx: bytes) -> dict[bytes, int]:
    """Object id -> offset, read from a v2 index (no offsets past 2 GiB here)."""
    (n,) = struct.unpack(">I", idx[8 + 255 * 4 : 8 + 256 * 4])
    ids_at = 8 + 256 * 4
    offsets_at = ids_at + n * 20 + n * 4
    ids = [idx[ids_at + 20 * i : ids_at + 20 * (i + 1)] for i in range(n)]
    return {
        sha: struct.unpack(">I", idx[offsets_at + 4 * i : offsets_at + 4 * i + 4])[0]
        for i, sha in enumerate(ids)
    }


def test_entry_header_is_gits_varint(tmp_path: Path) -> None:
    """3-bit type and a little-endian base-128 size, 4 bits in the first byte."""
    sized = [(BLOB, b""), (BLOB, b"x" * 15), (BLOB, b"y" * 16), (COMMIT, b"z" * (1 << 20))]
    objs = [(hash_object(t, raw), t, raw) for t, raw in sized]
    pack = Path(write_pack(str(tmp_path), objs, 1))
    data = pack.read_bytes()
    offsets = _offsets(pack.with_suffix(".idx").read_bytes())
    headers = [data[offsets[bytes.fromhex(sha)] :][:4] for sha, _, _ in objs]
    assert headers[0][:1] == bytes([0x30])
    assert headers[1][:1] == bytes([0x3F])
    assert headers[2][:2] == bytes([0xB0, 0x01])
    # 2^20 = 0 in the first 4 bits, then 7-bit groups 0, 0, 4.
    assert headers[3] == bytes([0x90, 0x80, 0x80, 0x04])


def test_git_reads_the_pack_and_rebuilds_the_same_index(tmp_path: Path, git) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "r.git"
    git("init", "--bare", "-q", str(repo))
    objs = objects()
    pack = Path(write_pack(str(repo / "objects"), objs, 1))
    idx = pack.with_suffix(".idx")
    for sha, _, raw in objs:
        assert git("--git-dir", str(repo), "cat-file", "-s", sha).strip() == str(len(raw))
    verified = git("verify-pack", "-v", str(idx))
    assert verified.count(" blob ") == 5 and " tree " in verified and " commit " in verified
    # git's own index of our pack is byte-identical to ours.
    rebuilt = tmp_path / "rebuilt.idx"
    git("index-pack", "-o", str(rebuilt), str(pack))
    assert rebuilt.read_bytes() == idx.read_bytes()
    git("--git-dir", str(repo), "fsck", "--strict")
    assert [p.name for p in (repo / "objects" / "pack").iterdir() if "tmp" in p.name] == []


def test_offsets_past_2_gib_go_to_the_large_offset_table(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp_pack"
    tmp.write_bytes(b"not read: only its index is written")
    entries = [(bytes([1]) + bytes(19), 7, 12), (bytes([2]) + bytes(19), 8, 3 << 30)]
    pack = Path(install_pack(str(tmp_path), str(tmp), entries, bytes(20)))
    idx = pack.with_suffix(".idx").read_bytes()
    n = 2
    offsets_at = 8 + 256 * 4 + n * 20 + n * 4
    small = struct.unpack(">2I", idx[offsets_at : offsets_at + 8])
    assert small == (12, 0x80000000)  # the second points at large-offset entry 0
    (large,) = struct.unpack(">Q", idx[offsets_at + 8 : offsets_at + 16])
    assert large == 3 << 30
    assert idx[-20:] == hashlib.sha1(idx[:-20]).digest()


def test_pack_checksum_and_count(tmp_path: Path) -> None:
    objs = objects()
    path = Path(write_pack(str(tmp_path), objs, 6))
    pack = path.read_bytes()
    checksum = bytes.fromhex(path.stem.removeprefix("pack-"))
    assert pack[:12] == b"PACK" + struct.pack(">II", 2, len(objs))
    assert pack[-20:] == checksum == hashlib.sha1(pack[:-20]).digest()
    # the first object follows the 12-byte header
    assert _offsets(path.with_suffix(".idx").read_bytes())[bytes.fromhex(objs[0][0])] == 12


def test_a_big_commit_lands_as_one_pack(tmp_path: Path, git) -> None:  # type: ignore[no-untyped-def]
    from datakit.store import Store
    from datakit.store._objects import PACK_MIN_OBJECTS

    repo = tmp_path / "r.git"
    files = PACK_MIN_OBJECTS * 2
    with Store.open(repo) as s:
        t = s.edit(None)
        for i in range(files):
            t.put(("d", f"f{i}"), f"content {i}\n".encode())
        tree = t.write_tree()
        assert s.set_head("master", s.make_commit(tree, [], b"big"), expected=None)
        t = s.edit(tree)
        t.put(("small",), b"one more")
        small = s.make_commit(t.write_tree(), [s.head("master") or ""], b"small")
        assert s.set_head("master", small, expected=s.head("master"))
    packs = sorted(p.name for p in (repo / "objects" / "pack").iterdir())
    assert len(packs) == 2 and packs[0].endswith(".idx") and packs[1].endswith(".pack")
    loose = [p for p in (repo / "objects").glob("??/*")]
    assert len(loose) == 3  # the small commit: commit, root tree, blob ("d" is unchanged)
    git("--git-dir", str(repo), "fsck", "--strict")
    listed = git("--git-dir", str(repo), "ls-tree", "-r", "--name-only", "master").split()
    assert len(listed) == files + 1
    with Store.open(repo, create=False) as fresh:
        view = fresh.tree(fresh.commit_info(fresh.head("master") or "").tree)
        assert view.read(("d", f"f{files - 1}")) == f"content {files - 1}\n".encode()


def test_the_same_pack_twice_keeps_the_first_and_leaves_nothing(tmp_path: Path, git) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "r.git"
    git("init", "--bare", "-q", str(repo))
    objs = objects()
    first = write_pack(str(repo / "objects"), objs, 1)
    before = Path(first).stat().st_ino
    assert write_pack(str(repo / "objects"), objs, 1) == first
    assert Path(first).stat().st_ino == before  # not replaced under git's feet
    names = sorted(p.name for p in (repo / "objects" / "pack").iterdir())
    assert len(names) == 2 and not any(n.startswith("tmp_") for n in names)
    git("--git-dir", str(repo), "fsck", "--strict")


def test_an_object_twice_is_refused(tmp_path: Path) -> None:
    objs = objects()
    with pytest.raises(ValueError, match="twice"):
        write_pack(str(tmp_path), [*objs, objs[0]], 1)
    assert not any(tmp_path.rglob("*"))
