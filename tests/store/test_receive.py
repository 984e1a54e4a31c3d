"""Store.receive_pack: a pushed pack, read from a stream up to its end,
checked as `git` with transfer.fsckObjects checks it, and stored only if all
of it passes (memory and disk stores). Packs are made by the real `git
pack-objects`; bad ones by hand or with `hash-object --literally`."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from datakit.store import PushRefused, Store
from datakit.store._receive import PackTooBig
from tests.gitrepo import git, git_bytes, literal, literal_tree

IDENT = b"t <t@example.com> 1483228800 +0000"
BIG = 1 << 30


def source(data: bytes, chunk: int = 1 << 20) -> Callable[[int], bytes]:
    """A ``recv``: at most ``chunk`` bytes at once, b"" at the end."""
    f = io.BytesIO(data)
    return lambda n: f.read(min(n, chunk))


def make_repo(tmp_path: Path, commits: int = 3) -> Path:
    repo = tmp_path / "src"
    git(None, "init", "-q", "-b", "master", str(repo))
    for i in range(commits):
        (repo / "f").write_text("line\n" * 200 + f"{i}\n")
        git(repo, "add", "f")
        git(repo, "commit", "-q", "-m", f"c{i}")
    return repo


def pack_of(repo: Path, revs: str, *options: str) -> bytes:
    return git_bytes(repo, "pack-objects", "--stdout", "--revs", *options, input=revs.encode())


def pack_file_names(store: Store) -> list[str]:
    if store.path is None:
        return []
    return sorted(os.listdir(os.path.join(store.path, "objects", "pack")))


def raw_pack(objects: list[tuple[int, bytes]], *, count: int | None = None) -> bytes:
    """A pack of whole (undeltified) objects, as given."""
    out = b"PACK" + struct.pack(">II", 2, len(objects) if count is None else count)
    for kind, body in objects:
        size = len(body)
        b = (kind << 4) | (size & 0x0F)
        size >>= 4
        header = b""
        while size:
            header += bytes([b | 0x80])
            b = size & 0x7F
            size >>= 7
        header += bytes([b])
        out += header + zlib.compress(body)
    return out + hashlib.sha1(out).digest()


def test_a_pack_is_read_to_its_end_and_stored(store: Store, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    data = pack_of(repo, "HEAD\n")
    # The client sends nothing after the pack: the stream must not be read
    # past its end (a byte more would wait for ever on a real connection).
    f = io.BytesIO(data + b"NOT READ")

    def recv(n: int) -> bytes:
        left = len(data) - f.tell()
        return f.read(min(n, left) if left > 0 else n)

    count = store.receive_pack(recv, max_pack=BIG, max_object=BIG)
    assert count == 9  # 3 commits, 3 trees, 3 blobs
    assert f.read() == b"NOT READ"
    assert store.has_commit(head)
    assert store.commit_info(head).message.startswith(b"c2")
    assert store.set_head("master", head, expected=None)
    if store.path is not None:
        git(store.path, "fsck", "--strict", "--no-dangling")
        assert not [n for n in pack_file_names(store) if n.startswith("tmp_")]


def test_a_thin_pack_is_completed(store: Store, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    base = git(repo, "rev-parse", "HEAD~1")
    head = git(repo, "rev-parse", "HEAD")
    store.receive_pack(source(pack_of(repo, "HEAD~1\n")), max_pack=BIG, max_object=BIG)
    thin = pack_of(repo, f"{head}\n^{base}\n", "--thin")
    store.receive_pack(source(thin, chunk=7), max_pack=BIG, max_object=BIG)
    assert store.has_commit(head)
    assert store.set_head("master", head, expected=None)
    assert store.tree(store.commit_info(head).tree).read(("f",)).endswith(b"2\n")
    if store.path is not None:
        git(store.path, "fsck", "--strict", "--no-dangling")


def test_an_empty_pack_stores_nothing(store: Store) -> None:
    before = pack_file_names(store)
    assert store.receive_pack(source(raw_pack([])), max_pack=BIG, max_object=BIG) == 0
    assert pack_file_names(store) == before


def endless_pack() -> Callable[[int], bytes]:
    """A ``recv`` of a pack that never ends: one blob declared 32 MiB,
    its zlib stream stored blocks of zeros for ever."""
    deflate = zlib.compressobj(0)
    pending = b"PACK" + struct.pack(">II", 2, 1) + bytes([0xBF, 0xFF, 0xFF, 0x7F])

    def recv(n: int) -> bytes:
        nonlocal pending
        while len(pending) < n:
            pending += deflate.compress(b"\0" * 65536)
        out, pending = pending[:n], pending[n:]
        return out

    return recv


def test_a_pack_over_the_cap_is_not_read_further(store: Store) -> None:
    endless = endless_pack()
    read = 0

    def recv(n: int) -> bytes:
        nonlocal read
        data = endless(n)
        read += len(data)
        return data

    with pytest.raises(PackTooBig, match="pack bigger than 1000000 bytes"):
        store.receive_pack(recv, max_pack=1_000_000, max_object=BIG)
    assert 1_000_000 < read <= 1_000_001
    assert not [n for n in pack_file_names(store) if n.startswith("tmp_")]


def test_keep_false_reads_and_drops_the_pack(store: Store, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=1)
    head = git(repo, "rev-parse", "HEAD")
    store.receive_pack(source(pack_of(repo, "HEAD\n")), max_pack=BIG, max_object=BIG, keep=False)
    assert not store.has_commit(head)


def _refused(store: Store, data: bytes, reason: str, *, max_object: int = BIG) -> None:
    before = pack_file_names(store)
    with pytest.raises(PushRefused, match=reason):
        store.receive_pack(source(data), max_pack=BIG, max_object=max_object)
    assert pack_file_names(store) == before  # nothing stored, nothing left behind


def test_malformed_packs_are_refused(store: Store, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=1)
    good = pack_of(repo, "HEAD\n")
    _refused(store, b"GARBAGE!" * 4, "not a pack")
    _refused(store, good[:-30], "truncated")
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    _refused(store, bytes(corrupt), "malformed pack")
    blob = b"x" * 100
    _refused(store, raw_pack([(3, blob), (3, blob)]), "twice in the pack")
    _refused(store, raw_pack([(3, blob)]), "larger than 99 bytes", max_object=99)
    # A declared size the stream does not make.
    lying = b"PACK" + struct.pack(">II", 2, 1) + bytes([0x3A]) + zlib.compress(b"x" * 11)
    _refused(store, lying + hashlib.sha1(lying).digest(), "inflates to more")
    assert not store.has_commit(git(repo, "rev-parse", "HEAD"))


def test_objects_git_would_refuse_are_refused(store: Store, tmp_path: Path) -> None:
    repo = tmp_path / "bad"
    git(None, "init", "-q", "--bare", str(repo))
    blob = literal(repo, "blob", b"data\n")
    bad_mode = literal_tree(repo, [(b"100664", b"f", blob)])
    ok_tree = literal_tree(repo, [(b"100644", b"f", blob)])
    modules = literal(repo, "blob", b'[submodule "m"]\n\tpath = m\n\turl = -upload-pack=x\n')
    dash_url = literal_tree(repo, [(b"100644", b".gitmodules", modules)])

    def commit(tree: str, author: bytes = b"author " + IDENT) -> str:
        body = b"tree " + tree.encode() + b"\n" + author + b"\ncommitter " + IDENT + b"\n\nm\n"
        return literal(repo, "commit", body)

    for head, reason in [
        (commit(bad_mode), "bad file mode"),
        (commit(ok_tree, b"author nobody"), "malformed author"),
        (commit(dash_url), "bad url"),
    ]:
        _refused(store, pack_of(repo, head + "\n"), reason)
        assert store.object_type(head) is None


def test_a_pack_naming_missing_objects_is_refused(store: Store, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commits=2)
    # The second commit alone: its parent (and its tree's blob) are not stored.
    only = git_bytes(
        repo, "pack-objects", "--stdout", input=git(repo, "rev-parse", "HEAD").encode()
    )
    _refused(store, only, "is missing")
    # A commit unreachable from anything pushed is checked just the same.
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    dangling = literal(repo, "commit", b"tree " + tree.encode() + b"\nparent " + b"1" * 40 + b"\n"
                       b"author " + IDENT + b"\ncommitter " + IDENT + b"\n\nm\n")  # fmt: skip
    objs = "\n".join([dangling, tree, git(repo, "rev-parse", "HEAD:f")]) + "\n"
    _refused(store, git_bytes(repo, "pack-objects", "--stdout", input=objs.encode()), "missing")
