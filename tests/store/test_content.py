"""Transaction file content bounded in memory, and blobs read without copies."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from datakit.store import FileTooLarge, InvalidOffset, Kind, Limits, Store
from datakit.store._content import Content
from tests.store.conftest import run_git

SMALL = Limits(spill_threshold=1024, max_file_size=1 << 40, cache_size=4096)


def test_small_content_stays_in_memory_and_big_spills() -> None:
    c = Content(SMALL, b"abc")
    assert not c.spilled and len(c) == 3
    c.write(5, b"de")
    assert c.getvalue() == b"abc\0\0de"
    c.write(1 << 30, b"far")  # sparse: a hole in a temporary file
    assert c.spilled and len(c) == (1 << 30) + 3
    assert c.read((1 << 30) - 2, 10) == b"\0\0far"
    assert c.read(0, 8) == b"abc\0\0de\0"
    c.truncate(4)
    assert c.getvalue() == b"abc\0"
    c.truncate(1 << 31)
    assert len(c) == 1 << 31 and c.read((1 << 31) - 1, 5) == b"\0"
    c.close()


def test_sizes_past_the_maximum_are_file_too_large() -> None:
    c = Content(Limits(max_file_size=100))
    c.write(90, b"x" * 10)
    with pytest.raises(FileTooLarge):
        c.write(95, b"x" * 10)
    with pytest.raises(FileTooLarge):
        c.truncate(1 << 63)
    with pytest.raises(InvalidOffset):
        c.truncate(-1)
    assert len(c) == 100


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_spilled_file_commits_to_the_same_blob_git_makes(where: str, tmp_path: Path) -> None:
    s = Store.memory(SMALL) if where == "memory" else Store.open(tmp_path / "r.git", limits=SMALL)
    data = os.urandom(3 << 20) + b"\0" * 100 + b"end"
    t = s.edit(None)
    t.create_file(("big",))
    for off in range(0, len(data), 65536):
        t.write(("big",), off, data[off : off + 65536])
    t.write(("sparse",), 5 << 20, b"tail")
    tree = t.write_tree()
    commit = s.make_commit(tree, [], b"big")
    s.set_head("master", commit, expected=None)
    view = s.tree(tree)
    big = view.lookup(("big",))
    assert big is not None
    header = b"blob %d\0" % len(data)
    assert big.sha == hashlib.sha1(header + data).hexdigest()
    reader = s.blob_reader(big.sha)
    assert reader.size == len(data)
    assert reader.read(len(data) - 10, 100) == data[-10:]
    # Editing a committed big file copies it a chunk at a time.
    t2 = s.edit(tree)
    t2.write(("big",), 0, b"HEAD")
    assert t2.read(("big",), 0, 6) == b"HEAD" + data[4:6]
    assert t2.stat(("big",)) == (Kind.FILE, len(data))
    if where == "disk":
        repo = tmp_path / "r.git"
        run_git("fsck", "--strict", cwd=repo)
        assert run_git("cat-file", "-s", "master:sparse", cwd=repo).strip() == str((5 << 20) + 4)
        assert _git_bytes(repo, "master:big") == data
    s.close()


def _git_bytes(repo: Path, rev: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "blob", rev], cwd=repo, capture_output=True, check=True
    ).stdout


def test_big_blob_readers_share_one_temporary_file(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "r.git", limits=SMALL)
    data = os.urandom(64 << 10)
    t = s.edit(None)
    t.put(("f",), data)
    s.set_head("master", s.make_commit(t.write_tree(), [], b"m"), expected=None)
    s.close()
    s = Store.open(tmp_path / "r.git", limits=SMALL)  # cold: the blob is a loose object
    entry = s.tree(s.commit_info(s.head("master") or "").tree).lookup(("f",))
    assert entry is not None
    readers = [s.blob_reader(entry.sha) for _ in range(5)]
    assert all(r is readers[0] for r in readers)  # bigger than the cache: one shared file
    assert readers[0].read(100, 50) == data[100:150]
    s.close()


@pytest.mark.parametrize("packed", [False, True])
def test_big_blob_is_streamed_not_materialised(
    packed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blob bigger than the cache, loose or packed whole (as `git gc`
    packs big files), is sized from its header and inflated a chunk at a
    time into the shared file: never read whole through dulwich."""
    repo = tmp_path / "r.git"
    s = Store.open(repo, limits=SMALL)
    data = os.urandom(3 << 20)
    t = s.edit(None)
    t.put(("f",), data)
    s.set_head("master", s.make_commit(t.write_tree(), [], b"m"), expected=None)
    s.close()
    if packed:
        run_git("gc", "-q", "--prune=now", cwd=repo)
        assert not any((repo / "objects").glob("??/*"))
    s = Store.open(repo, limits=SMALL)
    entry = s.tree(s.commit_info(s.head("master") or "").tree).lookup(("f",))
    assert entry is not None

    def whole(sha: str) -> None:
        raise AssertionError(f"{sha} read whole")

    monkeypatch.setattr(s._db, "get_raw", whole)
    assert s.blob_size(entry.sha) == len(data)
    reader = s.blob_reader(entry.sha)
    assert reader.size == len(data)
    assert reader.read(len(data) - 100, 200) == data[-100:]
    assert reader.read(12345, 10) == data[12345:12355]
    s.close()


def test_a_file_changed_while_its_blob_was_staged_is_written_again(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "r.git", limits=SMALL)
    t = s.edit(None)
    t.write(("a",), 0, b"x" * 5000)  # spilled
    t.write(("b",), 0, b"y" * 5000)
    staged = t.stage_big_files()
    assert len(staged) == 2
    shas = t.write_staged(staged)  # (a server does this in a worker thread)
    t.write(("a",), 0, b"changed")  # meanwhile
    t.note_staged(staged, shas)
    tree = s.tree(t.write_tree())
    a, b = tree.lookup(("a",)), tree.lookup(("b",))
    assert a is not None and b is not None
    assert s.read_blob(a.sha) == b"changed" + b"x" * 4993
    assert b.sha in shas and a.sha not in shas  # b's staged blob used, a's written again
    s.set_head("master", s.make_commit(tree.sha, [], b"m"), expected=None)
    s.close()
    run_git("fsck", "--strict", cwd=tmp_path / "r.git")  # the stale blob is a valid object too


def test_all_contents_share_one_memory_budget_and_temporary_file_bound() -> None:
    from datakit.store import NoSpace
    from datakit.store._content import BUDGET

    memory, files = BUDGET.memory, BUDGET.files  # of contents other tests left alive
    limits = Limits(spill_threshold=1024, memory_budget=memory + 3000, max_temp_files=files + 2)
    small = [Content(limits, b"x" * 1000) for _ in range(3)]  # 3000 bytes: the budget
    assert not any(c.spilled for c in small)
    grown = Content(limits, b"y")
    grown.write(1, b"y")  # below the threshold, past the budget: a file
    assert grown.spilled and grown.getvalue() == b"yy"
    far = Content(limits)
    far.write(1 << 20, b"z")  # past the threshold: the second file
    with pytest.raises(NoSpace):
        Content(limits).truncate(4096)  # a third is refused
    assert BUDGET.files == files + 2
    for c in [*small, grown, far]:
        c.close()
    assert (BUDGET.memory, BUDGET.files) == (memory, files)
    again = Content(limits, b"x" * 1000)  # room again, in memory
    assert not again.spilled
    del again
    assert BUDGET.memory == memory


def test_big_blob_files_count_against_the_temporary_file_bound(tmp_path: Path) -> None:
    """Each blob bigger than the cache, while read, holds a temporary file
    (a descriptor): readers of many such blobs are bounded like transactions."""
    from datakit.store import NoSpace
    from datakit.store._content import BUDGET

    s = Store.open(tmp_path / "r.git", limits=SMALL)
    t = s.edit(None)
    for i in range(4):
        t.put((f"f{i}",), os.urandom(64 << 10))
    s.set_head("master", s.make_commit(t.write_tree(), [], b"m"), expected=None)
    s.close()
    limits = dataclasses.replace(SMALL, max_temp_files=BUDGET.files + 2)
    s = Store.open(tmp_path / "r.git", limits=limits)
    tree = s.tree(s.commit_info(s.head("master") or "").tree)
    shas = [entry.sha for i in range(4) if (entry := tree.lookup((f"f{i}",))) is not None]
    held = [s.blob_reader(shas[0]), s.blob_reader(shas[1])]
    with pytest.raises(NoSpace):
        s.blob_reader(shas[2])  # both files are read: no room
    del held
    third = s.blob_reader(shas[2])  # the two kept for a next reader give way
    assert third.read(0, 4) == third.read(0, 4)
    s.close()
