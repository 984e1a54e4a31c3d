"""Big blobs read while a worker thread inflates them (datakit.store._blobstream):
shared between readers, readers of a range not there yet wait for it, a
corrupt object is an error and never a hang, the temporary file goes with
the last reader, and the temporary-file budget holds."""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from datakit import store as st
from datakit.fs.treeview import BlobHandle, open_entry
from datakit.store import Store, StoreError, StreamedBlob
from datakit.store._content import BUDGET, Limits, temporary_file
from datakit.vfs import FsError
from tests.gitrepo import git

CHUNK = 1 << 20
WAIT = 30.0  # generous: only for something that must happen


def _data(mib: int) -> bytes:
    return (os.urandom(1 << 16) + bytes(1 << 16)) * (mib * 8)  # half of it deflates


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[tuple[Path, str, bytes]]:
    """A repository whose master holds ``big`` (3 MiB): (path, blob id, data)."""
    path = tmp_path / "r.git"
    data = _data(3)
    with Store.open(path) as s:
        t = s.edit(None)
        t.put(("big",), data)
        tree = t.write_tree()
        assert s.set_head("master", s.make_commit(tree, [], b"m"), expected=None)
        entry = s.tree(tree).lookup(("big",))
        assert entry is not None
    yield path, entry.sha, data


def _open(path: Path, **limits: object) -> Store:
    s = Store.open(path, create=False)
    s._db.STREAM_MIN = 64 << 10  # stream the 3 MiB blob (the cache would fit it)
    if limits:
        s._db.limits = dataclasses.replace(s._db.limits, **limits)  # type: ignore[arg-type]
    return s


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("packed", [False, True])
def test_concurrent_readers_share_one_inflation(
    repo: tuple[Path, str, bytes], packed: bool
) -> None:
    path, sha, data = repo
    if packed:
        git(path, "gc", "-q")
        assert not (path / "objects" / sha[:2] / sha[2:]).exists()
    with _open(path) as s:
        readers = [s.blob_reader(sha) for _ in range(4)]
        assert all(r is readers[0] for r in readers)  # one inflation, one file
        assert isinstance(readers[0], StreamedBlob)
        results: dict[int, bytes] = {}

        def read_all(i: int) -> None:
            step = 65536 + 4096 * i  # different request sizes, as diodcat's msize
            results[i] = b"".join(readers[i].read(o, step) for o in range(0, len(data), step))

        threads = [threading.Thread(target=read_all, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert all(results[i] == data for i in range(4))
        assert s._db.blobs.get(sha) is None  # never whole in memory
        assert readers[0].complete


def _gated(first: bytes, rest: bytes, gate: threading.Event) -> Callable[..., None]:
    def produce(emit: Callable[[bytes], None]) -> None:
        emit(first)
        assert gate.wait(WAIT)
        emit(rest)

    return produce


def _stream(produce: Callable[..., None], size: int) -> StreamedBlob:
    return StreamedBlob("ab" * 20, temporary_file(Limits()), size, produce)


def test_a_reader_past_the_inflated_part_waits_for_it() -> None:
    first, rest = b"a" * CHUNK, b"b" * CHUNK
    gate = threading.Event()
    blob = _stream(_gated(first, rest, gate), 2 * CHUNK)
    _until(lambda: blob.inflated == CHUNK)
    woken = threading.Event()
    assert blob.notify(0, CHUNK, woken.set)  # there already: no callback
    assert not blob.notify(CHUNK - 10, 20, woken.set)  # half of it is not
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(blob.read(CHUNK - 10, 20)))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not woken.is_set() and not blob.complete
    assert blob.read(0, 5) == b"aaaaa"  # the inflated part reads meanwhile
    gate.set()
    assert woken.wait(WAIT)
    reader.join(WAIT)
    assert got == [b"a" * 10 + b"b" * 10]
    assert blob.complete


def _corrupt_loose(path: Path) -> str:
    """A loose 'blob' declaring 3 MiB whose stream breaks after 1 MiB."""
    deflated = zlib.compress(b"blob %d\0" % (3 << 20) + b"x" * (1 << 20) + b"y" * (2 << 20))
    sha = "e" * 40
    (path / "objects" / "ee").mkdir(exist_ok=True)
    (path / "objects" / "ee" / sha[2:]).write_bytes(deflated[: len(deflated) // 2] + b"\xff" * 64)
    return sha


def _short_loose(path: Path) -> str:
    """A loose 'blob' declaring 3 MiB that inflates to 10 bytes."""
    sha = "d" * 40
    (path / "objects" / "dd").mkdir(exist_ok=True)
    (path / "objects" / "dd" / sha[2:]).write_bytes(
        zlib.compress(b"blob %d\0" % (3 << 20) + b"x" * 10)
    )
    return sha


@pytest.mark.parametrize("make", [_corrupt_loose, _short_loose])
def test_a_corrupt_object_is_an_error_not_a_hang(
    repo: tuple[Path, str, bytes], make: Callable[[Path], str]
) -> None:
    path, _, _ = repo
    sha = make(path)
    with _open(path) as s:
        assert s.blob_size(sha) == 3 << 20  # its header is fine
        reader = s.blob_reader(sha)
        errors: list[BaseException] = []

        def read_end() -> None:
            try:
                reader.read((3 << 20) - 100, 100)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=read_end)
        t.start()
        t.join(WAIT)
        assert not t.is_alive(), "a reader of a corrupt object hangs"
        assert len(errors) == 1 and isinstance(errors[0], StoreError)
        assert sha in str(errors[0])
        called = threading.Event()
        assert reader.notify(2 << 20, 10, called.set)  # failed: read at once...
        with pytest.raises(StoreError):
            reader.read(2 << 20, 10)  # ...and raise


async def test_a_corrupt_object_is_an_io_error_through_a_handle(
    repo: tuple[Path, str, bytes],
) -> None:
    path, _, _ = repo
    sha = _corrupt_loose(path)
    with _open(path) as s:
        handle = await open_entry(s, st.Entry(st.Kind.FILE, sha))
        assert handle.may_block
        with trio.fail_after(WAIT):
            with pytest.raises(FsError) as exc:
                await handle.read((3 << 20) - 100, 100)
        assert exc.value.errno == 5  # EIO
        assert sha in str(exc.value)


async def test_a_handle_waits_for_its_range_without_blocking_the_loop() -> None:
    gate = threading.Event()
    handle = BlobHandle(_stream(_gated(b"a" * CHUNK, b"b" * CHUNK, gate), 2 * CHUNK))
    assert handle.may_block  # the server runs its reads in tasks
    got: list[bytes] = []

    async def read() -> None:
        got.append(await handle.read(CHUNK - 10, 20))

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.sleep(0.2)  # the event loop runs meanwhile
            assert not got
            gate.set()
    assert got == [b"a" * 10 + b"b" * 10]
    assert await handle.read(2 * CHUNK - 3, 10) == b"bbb"
    assert not handle.may_block  # all there: its reads run inline again


async def test_a_handle_reads_a_streamed_blob_whole(repo: tuple[Path, str, bytes]) -> None:
    path, sha, data = repo
    with _open(path) as s:
        handle = await open_entry(s, st.Entry(st.Kind.FILE, sha))
        parts: list[bytes] = []
        with trio.fail_after(WAIT):
            offset = 0
            while offset < len(data):
                parts.append(await handle.read(offset, 300_000))
                offset += len(parts[-1])
        assert b"".join(parts) == data
        assert not handle.may_block


def _files_back_to(files: int) -> bool:
    gc.collect()
    return BUDGET.files == files


def test_the_file_goes_with_its_last_reader(repo: tuple[Path, str, bytes]) -> None:
    path, sha, data = repo
    with _open(path) as s:
        s._db._recent_big = deque(maxlen=0)  # keep none for a next reader
        gc.collect()  # what earlier tests left
        files = BUDGET.files
        first, second = s.blob_reader(sha), s.blob_reader(sha)
        assert BUDGET.files == files + 1  # one file for both
        assert first.read(0, 10) == data[:10]
        del first
        gc.collect()
        assert BUDGET.files == files + 1  # the second still reads it
        assert second.read(len(data) - 10, 10) == data[-10:]
        del second
        _until(lambda: _files_back_to(files))
        assert s._db._big.get(sha) is None


def test_an_abandoned_inflation_stops_and_closes_its_file() -> None:
    gc.collect()
    files = BUDGET.files
    gate = threading.Event()
    held = {"blob": _stream(_gated(b"a" * CHUNK, b"b" * CHUNK, gate), 2 * CHUNK)}
    _until(lambda: held["blob"].inflated == CHUNK)
    assert BUDGET.files == files + 1
    held.clear()
    gc.collect()
    assert BUDGET.files == files + 1  # the worker still writes to it
    gate.set()
    _until(lambda: _files_back_to(files))


def test_streamed_blobs_count_in_the_temporary_file_budget(
    repo: tuple[Path, str, bytes],
) -> None:
    path, sha, data = repo
    with Store.open(path, create=False) as w:
        t = w.edit(None)
        t.put(("other",), data[::-1])
        tree = t.write_tree()
        other = w.tree(tree).lookup(("other",))
        assert other is not None
        assert w.set_head("other", w.make_commit(tree, [], b"m"), expected=None)
    gc.collect()
    with _open(path, max_temp_files=BUDGET.files + 1) as s:
        held = s.blob_reader(sha)
        with pytest.raises(st.NoSpace):
            s.blob_reader(other.sha)  # the only file is being read
        assert held.read(0, 10) == data[:10]
        assert isinstance(held, StreamedBlob)
        del held  # (its worker may still be inflating: it stops, and gives the file back)
        gc.collect()
        # No reader any more: the one kept for a next reader gives its place.
        assert s.blob_reader(other.sha).read(0, 10) == data[::-1][:10]


def test_packed_sizes_come_from_entry_headers(tmp_path: Path) -> None:
    """`ls -l` of a packed tree: every blob's size (a delta's too, from its
    data's header and its chain's bases) without inflating any blob, equal
    to git's; a tree's id is no blob."""
    work = tmp_path / "w"
    git(None, "init", "-q", str(work))
    text = b"".join(b"line %d of a file that changes a little\n" % i for i in range(4000))
    for version in range(6):
        (work / "f").write_bytes(text + b"version %d\n" % version * (version + 1))
        (work / "d").mkdir(exist_ok=True)
        (work / "d" / "g").write_bytes(b"%d\n" % version + text)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", str(version))
    git(work, "repack", "-a", "-d", "-f", "-q", "--depth=50", "--window=50")
    listing = git(work, "verify-pack", "-v", *map(str, (work / ".git/objects/pack").glob("*.idx")))
    rows = [line.split() for line in listing.splitlines() if len(line.split()) >= 5]
    kinds = {row[0]: row[1] for row in rows if row[1] in ("blob", "tree")}
    assert any(row[1] == "blob" and len(row) >= 7 for row in rows), listing  # deltas
    with Store.open(work / ".git", create=False) as s:
        for sha, kind in kinds.items():
            if kind == "blob":
                assert s.blob_size(sha) == int(git(work, "cat-file", "-s", sha))
            else:
                with pytest.raises(st.NotFound):
                    s.blob_size(sha)
        assert not s._db.blobs.data  # nothing inflated


def test_a_blob_the_size_of_the_cache_is_not_inflated_at_every_read(
    repo: tuple[Path, str, bytes],
) -> None:
    """The cache refuses a blob heavier than its budget (size + 64): such a
    blob streams instead of being inflated again for each read."""
    path, sha, data = repo
    with _open(path) as s:
        s._db.STREAM_MIN = 1 << 30
        s._db.blobs.budget = len(data)
        inflations = 0
        real = s._db.get_raw

        def counting(key: str) -> object:
            nonlocal inflations
            inflations += key == sha
            return real(key)

        s._db.get_raw = counting  # type: ignore[method-assign,assignment]
        reader = s.blob_reader(sha)
        for offset in range(0, len(data), CHUNK):
            assert reader.read(offset, CHUNK) == data[offset : offset + CHUNK]
        assert inflations <= 1


def test_a_failed_stream_is_tried_again_by_a_new_opener(repo: tuple[Path, str, bytes]) -> None:
    path, _, _ = repo
    sha = _short_loose(path)
    with _open(path) as s:
        first = s.blob_reader(sha)
        with pytest.raises(StoreError):
            first.read(0, 3 << 20)
        assert isinstance(first, StreamedBlob) and first.failed
        again = s.blob_reader(sha)
        assert again is not first  # (a disk full may be over by now)
        with pytest.raises(StoreError):
            again.read(0, 3 << 20)


def test_a_worker_that_cannot_start_leaves_nothing_to_wait_for(
    repo: tuple[Path, str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opener gets the error and gives the file back; the half-made
    reader must not be queued as a file to be closed by a worker that never
    ran (a full budget then waited its whole timeout for it, every time)."""
    from datakit.store import _blobstream

    path, sha, _ = repo
    with _open(path) as s:
        gc.collect()
        files = BUDGET.files

        def cannot_start(self: threading.Thread) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(threading.Thread, "start", cannot_start)
        with pytest.raises(RuntimeError):
            s.blob_reader(sha)
        monkeypatch.undo()
        gc.collect()
        assert BUDGET.files == files
        assert not [one for one in _blobstream._closing if one.sha == sha and not one.closed]
