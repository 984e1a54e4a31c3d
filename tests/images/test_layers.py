"""Layers from DataKit trees (spec images.md C.2; IM-3, 5, 6, 7, 17 at the
layer level, reproducibility, PAX names, prefixes, submodules).

Layers are read back with ``tarfile`` and, where it matters, applied to a
model filesystem with the OCI rules (B.1) and compared with the commit's
tree. Most tests run on both client backends: the Git backend on a
repository and the 9p backend on a real ``datakit serve``.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import random
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from datakit.client import Commit, Connection, Kind, Transaction, Tree, connect
from datakit.images import layers
from datakit.images.layers import (
    LAYER_GZIP,
    LAYER_TAR,
    Layer,
    LayerError,
    delta_layer,
    full_layer,
    normalize_prefix,
)
from tests.gitrepo import RAW_NAME, git_written_repo
from tests.operations.procs import datakit_process
from tests.serverthread import running_server

# ---------------------------------------------------------------------------
# helpers


@pytest.fixture(params=["git", "9p"])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Connection]:
    """A connection on a fresh store: a Git repository, or a datakit server."""
    if request.param == "git":
        with connect(tmp_path / "repo") as c:
            yield c
    else:
        with running_server(tmp_path) as address, connect(address, timeout=30) as c:
            yield c


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def commit(
    conn: Connection,
    edit: Callable[[Transaction], None],
    branch: str = "master",
    message: str = "m",
) -> Commit:
    b = conn.branch(branch)
    with b.transaction() as t:
        edit(t)
        t.commit(message)
    head = b.head()
    assert head is not None
    return head


def members(layer: Layer) -> list[tarfile.TarInfo]:
    with tarfile.open(layer.path) as tf:
        return tf.getmembers()


def listing(layer: Layer) -> list[tuple[str, str]]:
    """(name, kind) of every entry in archive order; kind: dir/file/exec/link."""
    out = []
    for m in members(layer):
        if m.isdir():
            kind = "dir"
        elif m.issym():
            kind = "link"
        else:
            kind = "exec" if m.mode & 0o100 else "file"
        out.append((m.name, kind))
    return out


Model = dict[str, tuple[str, bytes | str | None]]  # path -> (kind, content/target)


def apply(fs: Model, layer: Layer) -> None:
    """Apply a layer to a model filesystem with the OCI rules (B.1)."""

    def drop(path: str) -> None:
        for p in [p for p in fs if p == path or p.startswith(path + "/")]:
            del fs[p]

    with tarfile.open(layer.path) as tf:
        entries = tf.getmembers()
        # Opaque whiteouts first, whatever their position; they hide lower
        # children only, so remember what this layer itself adds.
        for m in entries:
            head, _, base = m.name.rpartition("/")
            if base == ".wh..wh..opq":
                for p in [p for p in fs if p.startswith(head + "/" if head else "")]:
                    del fs[p]
        for m in entries:
            head, _, base = m.name.rpartition("/")
            if base == ".wh..wh..opq":
                continue
            if base.startswith(".wh."):
                drop(f"{head}/{base[4:]}" if head else base[4:])
                continue
            old = fs.get(m.name)
            if m.isdir():
                if old is None or old[0] != "dir":
                    drop(m.name)
                fs[m.name] = ("dir", None)
                continue
            drop(m.name)
            if m.issym():
                fs[m.name] = ("link", m.linkname)
            else:
                f = tf.extractfile(m)
                assert f is not None
                fs[m.name] = ("exec" if m.mode & 0o100 else "file", f.read())


def model_of(tree: Tree, prefix: str = "") -> Model:
    """What unpacking an image of ``tree`` below ``prefix`` should give."""
    fs: Model = {}
    parts = prefix.split("/") if prefix else []
    for i in range(1, len(parts) + 1):
        fs["/".join(parts[:i])] = ("dir", None)

    def walk(path: str) -> None:
        for name in tree.read_dir(path):
            p = f"{path}/{name}" if path else name
            stat = tree.stat(p)
            assert stat is not None
            key = f"{prefix}/{p}" if prefix else p
            if stat.kind is Kind.DIR:
                fs[key] = ("dir", None)
                walk(p)
            elif stat.kind is Kind.LINK:
                fs[key] = ("link", tree.read_link(p))
            elif stat.kind is not Kind.GITLINK:
                fs[key] = (stat.kind.value, tree.read_file(p))

    walk("")
    return fs


def c1_tree(t: Transaction) -> None:
    """IM-1's C1: {README, bin/run (exec), docs/a.md, link -> README}."""
    t.create_file("README", b"read me\n")
    t.make_dirs("bin")
    t.create_file("bin/run", b"#!/bin/sh\necho hi\n", executable=True)
    t.make_dirs("docs")
    t.create_file("docs/a.md", b"# A\n")
    t.create_symlink("link", "README")


def c2_edit(t: Transaction) -> None:
    """IM-3's C2: change docs/a.md, add docs/b.md, delete link and bin."""
    t.replace_file("docs/a.md", b"# A, again\n")
    t.create_file("docs/b.md", b"# B\n")
    t.remove("link")
    t.remove("bin")


# ---------------------------------------------------------------------------
# full layers


def test_im_01_full_layer_entries_and_attributes(conn: Connection, workdir: Path) -> None:
    c1 = commit(conn, c1_tree)
    layer = full_layer(c1, workdir=workdir)
    assert listing(layer) == [
        ("README", "file"),
        ("bin", "dir"),
        ("bin/run", "exec"),
        ("docs", "dir"),
        ("docs/a.md", "file"),
        ("link", "link"),
    ]
    modes = {m.name: m.mode for m in members(layer)}
    assert modes == {
        "README": 0o644,
        "bin": 0o755,
        "bin/run": 0o755,
        "docs": 0o755,
        "docs/a.md": 0o644,
        "link": 0o777,
    }
    for m in members(layer):
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0), m.name
    assert {m.name: m.linkname for m in members(layer) if m.issym()} == {"link": "README"}
    assert layer.entries == 6
    assert layer.media_type == LAYER_GZIP
    fs: Model = {}
    apply(fs, layer)
    assert fs == model_of(c1.tree())


def test_full_layer_mtime_option(conn: Connection, workdir: Path) -> None:
    c1 = commit(conn, c1_tree)
    layer = full_layer(c1, workdir=workdir, mtime=c1.time)
    assert c1.time > 0
    assert {m.mtime for m in members(layer)} == {c1.time}
    assert layer.digest != full_layer(c1, workdir=workdir).digest


def test_digests_sizes_and_raw_tar(conn: Connection, workdir: Path) -> None:
    """digest = sha256 of the stored bytes, diff_id = sha256 of the tar;
    gzip header with mtime 0 and no file name; --compression none."""
    c1 = commit(conn, c1_tree)
    layer = full_layer(c1, workdir=workdir)
    blob = layer.path.read_bytes()
    assert layer.size == len(blob)
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    tar = gzip.decompress(blob)
    assert layer.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert layer.digest != layer.diff_id
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] & 0x08 == 0  # no FNAME
    assert blob[4:8] == b"\0\0\0\0"  # MTIME 0
    plain = full_layer(c1, workdir=workdir, compression="none")
    assert plain.media_type == LAYER_TAR
    assert plain.path.read_bytes() == tar
    assert plain.digest == plain.diff_id == layer.diff_id
    assert plain.size == len(tar)


def test_im_02_reproducible(conn: Connection, workdir: Path) -> None:
    c1 = commit(conn, c1_tree)
    a = full_layer(c1, workdir=workdir)
    b = full_layer(c1, workdir=workdir)
    assert a.path != b.path
    assert a.path.read_bytes() == b.path.read_bytes()
    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    # Another commit (other branch, other message, later) with the same tree.
    other = commit(conn, c1_tree, branch="other", message="other")
    assert other.id != c1.id and other.tree_id == c1.tree_id
    assert full_layer(other, workdir=workdir).digest == a.digest
    # The same for deltas.
    c2 = commit(conn, c2_edit)
    other2 = commit(conn, c2_edit, branch="other", message="other")
    assert other2.id != c2.id and other2.tree_id == c2.tree_id
    d1 = delta_layer(c1, c2, workdir=workdir)
    d2 = delta_layer(other, other2, workdir=workdir)
    assert d1.path.read_bytes() == d2.path.read_bytes()


def test_pax_long_and_non_ascii_names(conn: Connection, workdir: Path) -> None:
    long_dir = "d" * 120
    long_name = "f" * 150 + ".txt"
    target = "../" * 40 + "t" * 80  # a symlink target over 100 bytes

    def edit(t: Transaction) -> None:
        t.make_dirs(long_dir)
        t.create_file(f"{long_dir}/{long_name}", b"long")
        t.make_dirs("café")
        t.create_file("café/ñandú-日本.txt", b"utf8")
        t.create_symlink("far", target)

    c = commit(conn, edit)
    layer = full_layer(c, workdir=workdir, compression="none")
    assert listing(layer) == [
        ("café", "dir"),
        ("café/ñandú-日本.txt", "file"),
        (long_dir, "dir"),
        (f"{long_dir}/{long_name}", "file"),
        ("far", "link"),
    ]
    assert [m.linkname for m in members(layer) if m.issym()] == [target]
    raw = layer.path.read_bytes()
    # PAX extended headers carry the full names (ustar fields cannot).
    assert f"path={long_dir}/{long_name}\n".encode() in raw
    assert "path=café/ñandú-日本.txt\n".encode() in raw
    assert f"linkpath={target}\n".encode() in raw
    with tarfile.open(layer.path) as tf:
        assert tf.pax_headers == {}  # no global header
        info = tf.getmember(f"{long_dir}/{long_name}")
        f = tf.extractfile(info)
        assert f is not None and f.read() == b"long"


def test_full_layer_prefix(conn: Connection, workdir: Path) -> None:
    c1 = commit(conn, c1_tree)
    layer = full_layer(c1, prefix="/srv/data/", workdir=workdir)
    assert listing(layer)[:4] == [
        ("srv", "dir"),
        ("srv/data", "dir"),
        ("srv/data/README", "file"),
        ("srv/data/bin", "dir"),
    ]
    fs: Model = {}
    apply(fs, layer)
    assert fs == model_of(c1.tree(), "srv/data")
    # "/" and "" mean the root: no prefix entries at all.
    root = full_layer(c1, workdir=workdir).digest
    assert full_layer(c1, prefix="", workdir=workdir).digest == root


def test_normalize_prefix() -> None:
    assert normalize_prefix("/") == ""
    assert normalize_prefix("") == ""
    assert normalize_prefix("/srv/data/") == "srv/data"
    assert normalize_prefix("var/run/kontext") == "var/run/kontext"
    for bad in ("/srv/../etc", "a//b", "/./x", "/x/.wh.y"):
        with pytest.raises(LayerError, match="prefix"):
            normalize_prefix(bad)


def test_full_layer_of_empty_tree(conn: Connection, workdir: Path) -> None:
    c = commit(conn, lambda t: None)
    assert full_layer(c, workdir=workdir).entries == 0
    assert listing(full_layer(c, prefix="/a/b", workdir=workdir)) == [("a", "dir"), ("a/b", "dir")]


# ---------------------------------------------------------------------------
# delta layers


def test_im_03_delta_layer_contents(conn: Connection, workdir: Path) -> None:
    c1 = commit(conn, c1_tree)
    c2 = commit(conn, c2_edit)
    layer = delta_layer(c1, c2, workdir=workdir)
    assert listing(layer) == [
        (".wh.bin", "file"),
        (".wh.link", "file"),
        ("docs", "dir"),
        ("docs/a.md", "file"),
        ("docs/b.md", "file"),
    ]
    wh = {m.name: m for m in members(layer)}
    for name in (".wh.bin", ".wh.link"):
        assert (wh[name].size, wh[name].mode, wh[name].type) == (0, 0o644, tarfile.REGTYPE)
    assert layer.entries == 5
    fs: Model = {}
    apply(fs, full_layer(c1, workdir=workdir))
    assert fs != model_of(c2.tree())  # the model comparison can fail
    apply(fs, layer)
    assert fs == model_of(c2.tree())


def test_delta_with_prefix(conn: Connection, workdir: Path) -> None:
    c1 = commit(conn, c1_tree)
    c2 = commit(conn, c2_edit)
    layer = delta_layer(c1, c2, prefix="/srv/data", workdir=workdir)
    assert [n for n, _ in listing(layer)] == [
        "srv",
        "srv/data",
        "srv/data/.wh.bin",
        "srv/data/.wh.link",
        "srv/data/docs",
        "srv/data/docs/a.md",
        "srv/data/docs/b.md",
    ]
    # Nothing changed: an empty layer (not even the prefix directories).
    same = delta_layer(c2, c2, prefix="/srv/data", workdir=workdir)
    assert same.entries == 0 and members(same) == []


def test_im_05_type_changes_need_no_whiteout(conn: Connection, workdir: Path) -> None:
    def before(t: Transaction) -> None:
        t.make_dirs("docs/old")
        t.create_file("docs/b.md", b"b")
        t.create_file("docs/old/y", b"y")
        t.create_file("keep", b"k")

    def after(t: Transaction) -> None:
        t.remove("docs/b.md")
        t.make_dirs("docs/b.md")
        t.create_file("docs/b.md/x", b"x")
        t.remove("docs/old")
        t.create_file("docs/old", b"now a file")

    c_old = commit(conn, before)
    c3 = commit(conn, after)
    layer = delta_layer(c_old, c3, workdir=workdir)
    assert listing(layer) == [
        ("docs", "dir"),
        ("docs/b.md", "dir"),
        ("docs/b.md/x", "file"),
        ("docs/old", "file"),
    ]
    fs: Model = {}
    apply(fs, full_layer(c_old, workdir=workdir))
    apply(fs, layer)
    assert fs == model_of(c3.tree())


def test_kind_changes_file_exec_link(conn: Connection, workdir: Path) -> None:
    def before(t: Transaction) -> None:
        t.create_file("a", b"same")
        t.create_file("b", b"same")
        t.create_symlink("c", "a")
        t.create_file("d", b"unchanged")

    def after(t: Transaction) -> None:
        t.set_executable("a", True)  # same blob, other mode
        t.remove("b")
        t.create_symlink("b", "d")  # file -> symlink
        t.remove("c")
        t.create_file("c", b"was a link")  # symlink -> file

    c_old, c_new = commit(conn, before), commit(conn, after)
    layer = delta_layer(c_old, c_new, workdir=workdir)
    assert listing(layer) == [("a", "exec"), ("b", "link"), ("c", "file")]
    fs: Model = {}
    apply(fs, full_layer(c_old, workdir=workdir))
    apply(fs, layer)
    assert fs == model_of(c_new.tree())


def test_im_06_deep_removal_is_one_whiteout(conn: Connection, workdir: Path) -> None:
    def before(t: Transaction) -> None:
        for d in range(10):
            t.make_dirs(f"vendor/pkg{d}/src")
            for f in range(100):
                t.create_file(f"vendor/pkg{d}/{'src/' if f % 2 else ''}f{f}", b"%d" % f)
        t.create_file("main", b"m")

    c_old = commit(conn, before)
    c_new = commit(conn, lambda t: t.remove("vendor"))
    assert len(c_new.diff(c_old)) == 1000
    layer = delta_layer(c_old, c_new, workdir=workdir)
    assert listing(layer) == [(".wh.vendor", "file")]

    # One level down: one whiteout per removed top directory, in its parent.
    def deep(t: Transaction) -> None:
        t.make_dirs("a/b/c/d")
        t.create_file("a/b/c/d/e", b"")
        t.create_file("a/keep", b"")

    c_third = commit(conn, deep)
    c_fourth = commit(conn, lambda t: t.remove("a/b"))
    assert listing(delta_layer(c_third, c_fourth, workdir=workdir)) == [
        ("a", "dir"),
        ("a/.wh.b", "file"),
    ]


def test_im_07_forbidden_names_refused(conn: Connection, workdir: Path) -> None:
    c_ok = commit(conn, c1_tree)

    def bad(t: Transaction) -> None:
        t.make_dirs("a")
        t.create_file("a/.wh.b", b"hidden")
        t.create_file("a/keep", b"k")

    c_bad = commit(conn, bad)
    with pytest.raises(LayerError, match=r"^a/\.wh\.b: "):
        full_layer(c_bad, workdir=workdir)
    assert list(workdir.iterdir()) == []
    with pytest.raises(LayerError, match=r"^a/\.wh\.b: "):
        delta_layer(c_ok, c_bad, workdir=workdir, compression="none")
    assert list(workdir.iterdir()) == []
    # Removing it again is fine: the delta writes no entry with that name
    # (and no whiteout for it: it was never in an image).
    c_fixed = commit(conn, lambda t: t.remove("a/.wh.b"))
    assert listing(delta_layer(c_bad, c_fixed, workdir=workdir)) == []
    fixed = delta_layer(c_ok, c_fixed, workdir=workdir)
    assert listing(fixed) == [("a", "dir"), ("a/keep", "file")]


def test_bad_options_refused(conn: Connection, workdir: Path) -> None:
    c1 = commit(conn, c1_tree)
    with pytest.raises(LayerError, match="compression 'zstd'"):
        full_layer(c1, workdir=workdir, compression="zstd")
    with pytest.raises(LayerError, match="opaque threshold 0"):
        delta_layer(c1, c1, workdir=workdir, opaque_threshold=0)
    assert list(workdir.iterdir()) == []


def test_im_17_opaque_whiteouts(conn: Connection, workdir: Path) -> None:
    def before(t: Transaction) -> None:
        t.make_dirs("o/sub")
        t.create_file("o/old1", b"1")
        t.create_file("o/old2", b"2")
        t.create_file("o/sub/s", b"s")
        t.create_file("top", b"t")

    def after(t: Transaction) -> None:
        t.remove("o/old1")
        t.remove("o/old2")
        t.create_file("o/new", b"n")
        t.replace_file("o/sub/s", b"changed")

    c_old, c_new = commit(conn, before), commit(conn, after)
    explicit = delta_layer(c_old, c_new, workdir=workdir)
    assert [n for n, _ in listing(explicit)] == [
        "o",
        "o/.wh.old1",
        "o/.wh.old2",
        "o/new",
        "o/sub",
        "o/sub/s",
    ]
    opaque = delta_layer(c_old, c_new, workdir=workdir, opaque_threshold=2)
    assert [n for n, _ in listing(opaque)] == ["o", "o/.wh..wh..opq", "o/new", "o/sub", "o/sub/s"]
    assert delta_layer(c_old, c_new, workdir=workdir, opaque_threshold=3).digest == explicit.digest
    base: Model = {}
    apply(base, full_layer(c_old, workdir=workdir))
    for layer in (explicit, opaque):
        fs = dict(base)
        apply(fs, layer)
        assert fs == model_of(c_new.tree())


def test_opaque_not_used_when_an_entry_survives(conn: Connection, workdir: Path) -> None:
    def before(t: Transaction) -> None:
        t.make_dirs("o")
        for name in ("old1", "old2", "old3", "kept"):
            t.create_file(f"o/{name}", name.encode())

    def after(t: Transaction) -> None:
        for name in ("old1", "old2", "old3"):
            t.remove(f"o/{name}")

    c_old, c_new = commit(conn, before), commit(conn, after)
    layer = delta_layer(c_old, c_new, workdir=workdir, opaque_threshold=1)
    assert [n for n, _ in listing(layer)] == ["o", "o/.wh.old1", "o/.wh.old2", "o/.wh.old3"]
    # The tree's root never gets an opaque whiteout (it would hide a base image).
    c_gone = commit(conn, lambda t: t.remove("o"))
    assert listing(delta_layer(c_new, c_gone, workdir=workdir, opaque_threshold=1)) == [
        (".wh.o", "file")
    ]


def test_random_histories_apply_to_the_new_tree(conn: Connection, workdir: Path) -> None:
    """Full layer + a chain of deltas unpacks to every commit's tree."""
    rng = random.Random(12)
    names = ["a", "b", "c", "a-b", "a.b", "é"]

    def mutate(t: Transaction) -> None:
        for _ in range(6):
            path = "/".join(rng.choice(names) for _ in range(rng.randint(1, 3)))
            action = rng.random()
            existing = t.stat(path)
            if action < 0.3:
                if existing is not None:
                    t.remove(path)
                continue
            if existing is not None:
                t.remove(path)
            parent = path.rpartition("/")[0]
            if parent:
                for i in range(1, parent.count("/") + 2):
                    p = "/".join(parent.split("/")[:i])
                    s = t.stat(p)
                    if s is not None and s.kind is not Kind.DIR:
                        t.remove(p)
                t.make_dirs(parent)
            if action < 0.6:
                t.create_file(path, rng.randbytes(8), executable=rng.random() < 0.3)
            elif action < 0.8:
                t.create_symlink(path, rng.choice(names))
            else:
                t.make_dirs(path)
                t.create_file(f"{path}/inner", b"i")

    prev = commit(conn, mutate)
    fs: Model = {}
    apply(fs, full_layer(prev, workdir=workdir))
    for step in range(25):
        cur = commit(conn, mutate)
        layer = delta_layer(prev, cur, workdir=workdir, opaque_threshold=(1 if step % 2 else None))
        apply(fs, layer)
        assert fs == model_of(cur.tree()), step
        names_in_layer = [m.name for m in members(layer)]
        assert len(names_in_layer) == len(set(names_in_layer))  # B.1: no duplicates
        prev = cur


class _Counting:
    """A commit whose trees count the reads and stats made through them."""

    def __init__(self, inner: Commit, counter: list[str]) -> None:
        self._inner, self._counter = inner, counter
        self.id = inner.id

    def tree(self) -> Any:
        inner, counter = self._inner.tree(), self._counter

        class T:
            def read(self, p: Any) -> Any:
                counter.append(f"read {p}")
                return inner.read(p)

            def stat(self, p: Any) -> Any:
                counter.append(f"stat {p}")
                return inner.stat(p)

            def read_dir(self, p: Any) -> Any:
                counter.append(f"read_dir {p}")
                return inner.read_dir(p)

            def read_chunks(self, p: Any, size: int) -> Any:
                counter.append(f"read_chunks {p}")
                return inner.read_chunks(p, size)

        return T()

    def diff(self, other: Any) -> Any:
        return self._inner.diff(other._inner)


def test_im_18_delta_reads_only_the_change(conn: Connection, workdir: Path) -> None:
    """A one-file change in a 2,000-file tree: the delta looks at that file
    only (no walk, not even a listing of its parents), and holds the file
    plus its parents."""

    def big(t: Transaction) -> None:
        for d in range(20):
            t.make_dirs(f"d{d}/sub")
            for f in range(100):
                t.create_file(f"d{d}/sub/f{f}", b"%d" % f)

    c_old = commit(conn, big)
    c_new = commit(conn, lambda t: t.replace_file("d7/sub/f42", b"new"))
    calls: list[str] = []
    old, new = _Counting(c_old, calls), _Counting(c_new, calls)
    layer = delta_layer(old, new, workdir=workdir)  # type: ignore[arg-type]
    assert listing(layer) == [("d7", "dir"), ("d7/sub", "dir"), ("d7/sub/f42", "file")]
    assert len(calls) <= 3, calls


# ---------------------------------------------------------------------------
# submodules and repositories written by git; the 9p process backend


def test_submodule_skipped_with_warning(tmp_path: Path, workdir: Path) -> None:
    repo = git_written_repo(tmp_path / "repo.git")
    warnings: list[str] = []
    with connect(repo) as c:
        head = c.branch("master").head()
        assert head is not None
        layer = full_layer(head, workdir=workdir, warn=warnings.append)
        names = [m.name for m in members(layer)]
        assert warnings == ["sub: submodule skipped"]
        assert "sub" not in names
        # The Latin-1 file name and symlink target survive (PAX, binary charset).
        raw_name = RAW_NAME.decode("utf-8", "surrogateescape")
        with tarfile.open(layer.path, encoding="utf-8", errors="surrogateescape") as tf:
            got = {m.name: m for m in tf.getmembers()}
        assert set(got) == {raw_name, "badlink", "plain"}
        assert got["badlink"].linkname.encode("utf-8", "surrogateescape") == b"caf\xe9/\xff"
        # A delta adding a submodule (and removing one) warns and writes nothing for it.
        empty = commit(c, lambda t: t.remove(""), branch="empty")
        warnings.clear()
        delta = delta_layer(empty, head, workdir=workdir, warn=warnings.append)
        assert warnings == ["sub: submodule skipped"]
        assert "sub" not in [m.name for m in members(delta)]


def test_9p_process_and_git_backend_give_the_same_layers(tmp_path: Path, workdir: Path) -> None:
    """A `datakit serve --git` process over TCP and the Git backend on the
    same repository produce byte-identical layers and the same warnings
    (a repository written by git: a submodule, a Latin-1 name and target)."""
    repo = git_written_repo(tmp_path / "repo.git")

    def build(c: Connection, ids: list[str]) -> tuple[list[str], list[str]]:
        by_git, c1, c2 = (c.commit(i) for i in ids)
        warnings: list[str] = []
        digests = [
            full_layer(by_git, workdir=workdir, warn=warnings.append).digest,
            full_layer(c2, workdir=workdir, warn=warnings.append, prefix="/srv").digest,
            delta_layer(c1, c2, workdir=workdir, prefix="/srv").digest,
            delta_layer(by_git, c2, workdir=workdir, warn=warnings.append).digest,
            delta_layer(c2, by_git, workdir=workdir, warn=warnings.append).digest,
        ]
        return digests, warnings

    with connect(repo) as g:
        head = g.branch("master").head()
        assert head is not None
        ids = [head.id, commit(g, c1_tree).id, commit(g, c2_edit).id]
        git_result = build(g, ids)
    assert git_result[1] == ["sub: submodule skipped"] * 2
    with datakit_process("--git", str(repo)) as (port, _, _proc):
        with connect(f"tcp://127.0.0.1:{port}", timeout=30) as n:
            assert build(n, ids) == git_result


def test_reader_renews_its_tree(conn: Connection, workdir: Path, monkeypatch: Any) -> None:
    """A walk longer than the reader's budget gives the same layer (the
    9p backend's per-tree memo is dropped on the way, not the content)."""

    c = commit(conn, lambda t: [t.create_file(f"f{i}", b"x" * 100) for i in range(30)])
    whole = full_layer(c, workdir=workdir).digest
    monkeypatch.setattr(layers, "_READER_ITEMS", 3)
    trees: list[object] = []
    real = layers._Reader.node

    def node(self: Any, steps: Any) -> Any:
        trees.append(self.tree)
        return real(self, steps)

    monkeypatch.setattr(layers._Reader, "node", node)
    assert full_layer(c, workdir=workdir).digest == whole
    assert len({id(t) for t in trees}) > 5


# ---------------------------------------------------------------------------
# the tar writer against Python's tarfile

_LATIN1 = b"caf\xe9".decode("utf-8", "surrogateescape")  # a name that is not UTF-8
_CASES: list[tuple[str, str, bytes | str | None]] = [
    ("dir", "a", None),
    ("file", "a/x", b"x" * 700),
    ("exec", "a/run", b"#!/bin/sh\n"),
    ("file", "a/empty", b""),
    ("file", "a/block", b"b" * 512),
    ("link", "a/l", "x"),
    ("link", "a/far", "../" * 50),
    ("link", "a/ü", "ö/" + "é" * 60),
    ("dir", "d" * 99, None),  # 100 bytes with the slash: fits
    ("dir", "e" * 100, None),  # 101 with the slash: PAX
    ("file", "f" * 100, b"fits"),
    ("file", "g" * 101, b"PAX"),
    ("file", "x/" * 120 + "deep", b"deep"),
    ("file", "日本/語", b"utf-8"),
    ("file", _LATIN1, b"latin-1 name"),
    ("link", "badlink", _LATIN1 + "/x"),
    ("whiteout", "a/.wh.gone", None),
]


def _reference(cases: list[tuple[str, str, bytes | str | None]], mtime: int) -> bytes:
    """The same entries written by tarfile in PAX format."""
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tf:
        for kind, name, payload in cases:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uname = info.gname = ""
            data = b""
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "link":
                assert isinstance(payload, str)
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, payload
            else:
                data = payload if isinstance(payload, bytes) else b""
                info.mode = 0o755 if kind == "exec" else 0o644
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("mtime", [0, 1_700_000_000])
def test_tar_bytes_equal_tarfile_pax_output(mtime: int) -> None:
    out = io.BytesIO()
    writer = layers._LayerWriter(out, "none", mtime)  # type: ignore[arg-type]
    for kind, name, payload in _CASES:
        if kind == "dir":
            writer.directory(name)
        elif kind == "link":
            assert isinstance(payload, str)
            writer.symlink(name, payload)
        elif kind == "whiteout":
            writer.whiteout(name)
        else:
            assert isinstance(payload, bytes)
            pieces = [payload[i : i + 100] for i in range(0, len(payload), 100)]
            writer.file(name, len(payload), pieces, kind == "exec")
    writer.close()
    ours = out.getvalue()
    assert len(ours) % (20 * 512) == 0
    assert ours == _reference(_CASES, mtime)
    with tarfile.open(fileobj=io.BytesIO(ours), encoding="utf-8", errors="surrogateescape") as tf:
        names = [m.name for m in tf.getmembers()]
    assert names == [name.rstrip("/") for _, name, _ in _CASES]


@pytest.mark.parametrize("pieces", [[b"abc", b"d"], [b"ab"], [], [b"abcd", b""], [b"abcde"]])
def test_file_of_another_size_than_its_header_is_refused(pieces: list[bytes]) -> None:
    """A file that changed size while read would corrupt the tar."""
    writer = layers._LayerWriter(io.BytesIO(), "none", 0)  # type: ignore[arg-type]
    if sum(map(len, pieces)) == 4:
        writer.file("dir/f", 4, pieces, False)
        return
    with pytest.raises(LayerError, match="dir/f: 4 bytes expected"):
        writer.file("dir/f", 4, pieces, False)


def test_big_file_is_streamed_into_the_layer(conn: Connection, workdir: Path) -> None:
    """A file of many read pieces: the layer is what tarfile writes for it,
    and the Python allocations while it is made stay well under its size."""
    mib = 1 << 20
    data = b"".join(bytes([i]) * mib for i in range(20)) + b"tail"  # not a whole number of pieces
    expected = _reference([("dir", "dir", None), ("exec", "dir/big", data)], 0)
    with conn.branch("master").transaction() as t:
        t.create_dir("dir")
        t.create_file("dir/big", data, executable=True)
        t.commit("big")
    del data
    c = conn.branch("master").head()
    assert c is not None
    gc.collect()
    tracemalloc.start()
    try:
        layer = full_layer(c, workdir=workdir)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert gzip.decompress(layer.path.read_bytes()) == expected
    assert layer.diff_id == "sha256:" + hashlib.sha256(expected).hexdigest()
    assert peak < 6 * mib, f"peak {peak / mib:.1f} MiB"


def test_tar_header_for_a_size_beyond_ustar() -> None:
    """Files of 8 GiB and more get a PAX size record, as tarfile writes it."""
    info = tarfile.TarInfo("huge")
    info.size, info.mode, info.uname, info.gname = 8**11 + 5, 0o644, "", ""
    expected = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    assert layers._header("huge", b"0", 0o644, 8**11 + 5, 0) == expected
    assert b"size=8589934597\n" in expected


# ---------------------------------------------------------------------------
# measurements (IM-18), not a test: python -m tests.images.test_layers [N] [--9p]


def _measure_layers(address: str, old_id: str, new_id: str) -> None:  # pragma: no cover
    """In a process of its own, so the peak RSS is the layers' alone."""
    import contextlib
    import resource
    import tempfile
    import time

    options = {"timeout": 60} if "://" in address else {}
    with connect(address, **options) as c, tempfile.TemporaryDirectory() as work:
        old, new = c.commit(old_id), c.commit(new_id)
        start = time.perf_counter()
        layer = full_layer(old, workdir=Path(work))
        took = time.perf_counter() - start
        # VmHWM, not getrusage: ru_maxrss survives execve, so a child
        # of the big process that built the repository reports its peak.
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        with contextlib.suppress(OSError, StopIteration, ValueError):
            status = Path("/proc/self/status").read_text().splitlines()
            rss = int(next(x for x in status if x.startswith("VmHWM:")).split()[1]) // 1024
        print(
            f"full layer: {took:.1f} s, {layer.entries} entries, {layer.size} bytes, "
            f"peak RSS {rss} MB",
            flush=True,
        )
        start = time.perf_counter()
        delta = delta_layer(old, new, workdir=Path(work))
        took = time.perf_counter() - start
        print(f"one-file delta: {took:.3f} s, {delta.entries} entries", flush=True)


def _measure(files: int, over_9p: bool) -> None:  # pragma: no cover
    import shutil
    import subprocess
    import sys
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="layers-bench-"))
    repo = base / "repo"
    with connect(repo) as g:

        def big(t: Transaction) -> None:
            for i in range(files):
                d = f"d{i // 1000:03}/{'sub/' if i % 2 else ''}"
                if i % 1000 < 2:
                    t.make_dirs(d.rstrip("/"))
                t.create_file(f"{d}f{i:06}.txt", (f"file {i}\n" * 8).encode())

        ids = [commit(g, big).id]
        ids.append(commit(g, lambda t: t.replace_file("d000/sub/f000001.txt", b"x\n")).id)

    def run(address: str) -> None:
        command = [sys.executable, "-m", "tests.images.test_layers", "--layers", address, *ids]
        subprocess.run(command, check=True)

    try:
        if over_9p:
            with datakit_process("--git", str(repo)) as (port, _, _proc):
                run(f"tcp://127.0.0.1:{port}")
        else:
            run(str(repo))
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":  # pragma: no cover
    import sys

    args = sys.argv[1:]
    if args[:1] == ["--layers"]:
        _measure_layers(*args[1:4])
    else:
        _measure(int(next((a for a in args if a.isdigit()), "100000")), "--9p" in args)
