"""Helpers for the end-to-end image scenarios (IM-1..IM-19, spec images.md
Part E): make commits through the public client, run `python -m datakit image`
as a subprocess, and look at what it produced only with real tools (skopeo,
umoci, podman) or by reading the layout and its blobs with tarfile.

Trees are compared as {path: (kind, content)} maps, kind one of "file",
"exec", "link", "dir"; content is the bytes of a file, the target of a link
and b"" for a directory. The same map comes from a commit (`tree_of`) and from
an unpacked root filesystem (`rootfs_tree`), so "the image equals the commit"
is one `==`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit.client import Commit, Connection, Kind, connect

WORKTREE = Path(__file__).resolve().parents[2]

Entry = tuple[str, bytes | str]
TreeMap = dict[str, Entry]
Spec = Mapping[str, "bytes | Entry | None"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        DOCKER_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
REVISION = "org.opencontainers.image.revision"
DK = "org.mobyproject.datakit."
PODMAN_BASE = "localhost/datakit-base-standin:bookworm"


def exe(data: bytes) -> Entry:
    return ("exec", data)


def link(target: str) -> Entry:
    return ("link", target)


def _entry(value: bytes | Entry) -> Entry:
    return ("file", value) if isinstance(value, bytes) else value


def with_dirs(files: Spec) -> TreeMap:
    """The full map of a spec: its entries plus every parent directory."""
    out: TreeMap = {}
    for path, value in files.items():
        if value is None:
            continue
        out[path] = _entry(value)
        parts = path.split("/")
        for i in range(1, len(parts)):
            out["/".join(parts[:i])] = ("dir", b"")
    return out


# ---- the database -----------------------------------------------------------


class Db:
    """A DataKit database the CLI reaches at `address` (`--db`), and a client
    connection to it for making commits."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.conn: Connection = connect(address)

    def close(self) -> None:
        self.conn.close()

    def commit(self, files: Spec, message: str = "commit", branch: str = "master") -> Commit:
        """Commit a tree that is exactly `files` (plus parent directories)."""
        b = self.conn.branch(branch)
        with b.transaction() as t:
            if t.read_dir(""):
                t.remove("")
            for path, value in sorted(files.items()):
                if value is None:
                    continue
                kind, content = _entry(value)
                parent = path.rpartition("/")[0]
                if parent:
                    t.make_dirs(parent)
                if kind == "link":
                    assert isinstance(content, str)
                    t.create_symlink(path, content)
                else:
                    assert isinstance(content, bytes)
                    t.create_file(path, content, executable=kind == "exec")
            t.commit(message)
        head = b.head()
        assert head is not None
        return head

    def update(self, changes: Spec, message: str = "update", branch: str = "master") -> Commit:
        """Commit the branch's tree with `changes` applied (None removes a path
        and everything below it; a value replaces whatever was there)."""
        head = self.conn.branch(branch).head()
        files: dict[str, bytes | Entry | None] = (
            {p: e for p, e in tree_of(head).items() if e[0] != "dir"} if head else {}
        )
        for path, value in changes.items():
            for p in [p for p in files if p == path or p.startswith(path + "/")]:
                del files[p]
            # a file replacing a directory or a path under a former file
            parts = path.split("/")
            for i in range(1, len(parts)):
                files.pop("/".join(parts[:i]), None)
            if value is not None:
                files[path] = value
        return self.commit(files, message, branch)


@contextmanager
def git_db(path: Path) -> Iterator[Db]:
    """A database that is a Git repository on disk (the CLI opens it itself)."""
    db = Db(str(path))
    try:
        yield db
    finally:
        db.close()


@contextmanager
def served_db(path: Path) -> Iterator[Db]:
    """A `datakit serve --git PATH` process; the CLI reaches it over 9p."""
    from tests.operations.procs import datakit_process

    with datakit_process("--git", str(path)) as (port, _metrics, _proc):
        db = Db(f"tcp://127.0.0.1:{port}")
        try:
            yield db
        finally:
            db.close()


def tree_of(commit: Commit) -> TreeMap:
    """The commit's tree as a map (directories included)."""
    tree = commit.tree()
    out: TreeMap = {}

    def walk(prefix: str) -> None:
        for name in tree.read_dir(prefix):
            path = f"{prefix}/{name}" if prefix else name
            st = tree.stat(path)
            assert st is not None, path
            if st.kind is Kind.DIR:
                out[path] = ("dir", b"")
                walk(path)
            elif st.kind is Kind.LINK:
                out[path] = ("link", tree.read_link(path))
            elif st.kind is Kind.EXEC:
                out[path] = ("exec", tree.read_file(path))
            else:
                out[path] = ("file", tree.read_file(path))

    walk("")
    return out


def under(tree: TreeMap, prefix: str) -> TreeMap:
    """`tree` moved under `prefix` ("srv/data"), the prefix's directories included."""
    prefix = prefix.strip("/")
    if not prefix:
        return dict(tree)
    out: TreeMap = {}
    parts = prefix.split("/")
    for i in range(1, len(parts) + 1):
        out["/".join(parts[:i])] = ("dir", b"")
    for path, entry in tree.items():
        out[f"{prefix}/{path}"] = entry
    return out


# ---- the CLI ----------------------------------------------------------------


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def lines(self) -> list[tuple[str, str]]:
        """stdout as (manifest digest, how) pairs, one per image written."""
        out = []
        for line in self.stdout.splitlines():
            digest, _, how = line.partition(" ")
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"bad output line {line!r}"
            out.append((digest, how))
        return out

    def one(self) -> tuple[str, str]:
        lines = self.lines()
        assert len(lines) == 1, f"expected one output line, got {self.stdout!r}"
        return lines[0]

    def __str__(self) -> str:
        return (
            f"$ datakit image {' '.join(self.args)}\nexit {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(WORKTREE) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.pop("REGISTRY_AUTH_FILE", None)
    env.update(extra or {})
    return env


def image_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "datakit", "image", *args]


def run_image(
    *args: str,
    check: bool = True,
    timeout: float = 600,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run `python -m datakit image ARGS` from this worktree.
    check=True: it must exit 0."""
    proc = subprocess.run(
        image_cmd(*args),
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
    if check:
        assert result.returncode == 0, str(result)
    return result


_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[2:]).returncode\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def run_image_rss(*args: str, rss_file: Path, timeout: float = 1800) -> tuple[Result, int]:
    """`run_image` with the CLI's peak RSS in bytes: a fresh wrapper process
    whose only child is the CLI reads RUSAGE_CHILDREN (ru_maxrss, KiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, str(rss_file), *image_cmd(*args)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
    assert result.returncode == 0, str(result)
    return result, int(rss_file.read_text()) * 1024


def expect_error(result: Result, *words: str) -> str:
    """The run failed as bad input must (spec C, issue "Bad input"): exit 1,
    nothing on stdout, one line `datakit image: ...` on stderr (warnings may
    precede it), naming each of `words`. Returns that line."""
    assert result.returncode == 1, str(result)
    assert result.stdout == "", str(result)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("datakit image: ")]
    assert len(errors) == 1, str(result)
    assert "Traceback" not in result.stderr, str(result)
    line = errors[0]
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


# ---- OCI layouts and layers -------------------------------------------------


@dataclass
class TarEntry:
    name: str
    type: str  # "dir", "file", "link", "other"
    mode: int
    uid: int
    gid: int
    mtime: float
    data: bytes
    linkname: str
    uname: str
    gname: str


def read_tar(blob: bytes, media_type: str = LAYER_GZIP) -> list[TarEntry]:
    raw = gzip.decompress(blob) if media_type.endswith("gzip") else blob
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        for ti in tf:
            data = b""
            if ti.isreg():
                f = tf.extractfile(ti)
                assert f is not None
                data = f.read()
            kind = (
                "dir" if ti.isdir() else "file" if ti.isreg() else "link" if ti.issym() else "other"
            )
            out.append(
                TarEntry(
                    ti.name,
                    kind,
                    ti.mode,
                    ti.uid,
                    ti.gid,
                    ti.mtime,
                    data,
                    ti.linkname,
                    ti.uname,
                    ti.gname,
                )
            )
    return out


def names(entries: list[TarEntry]) -> list[str]:
    """Entry names, directories with a trailing slash, in archive order."""
    return [e.name.rstrip("/") + ("/" if e.type == "dir" else "") for e in entries]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    """One image of an OCI layout."""

    root: Path
    manifest_digest: str
    manifest_bytes: bytes
    manifest: dict[str, Any]
    config: dict[str, Any]
    index_entry: dict[str, Any]

    def blob(self, digest: str) -> bytes:
        algo, _, hexd = digest.partition(":")
        return (self.root / "blobs" / algo / hexd).read_bytes()

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest["layers"])

    def layer_entries(self, i: int) -> list[TarEntry]:
        d = self.layers[i]
        return read_tar(self.blob(d["digest"]), d["mediaType"])

    def layer_tar(self, i: int) -> bytes:
        d = self.layers[i]
        raw = self.blob(d["digest"])
        return gzip.decompress(raw) if d["mediaType"].endswith("gzip") else raw

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.manifest.get("annotations") or {})

    def check_digests(self) -> None:
        """Every blob matches its descriptor; diff_ids match the layers."""
        assert sha256(self.manifest_bytes) == self.manifest_digest
        cfg = self.manifest["config"]
        assert sha256(self.blob(cfg["digest"])) == cfg["digest"]
        assert len(self.blob(cfg["digest"])) == cfg["size"]
        diff_ids = self.config["rootfs"]["diff_ids"]
        assert len(diff_ids) == len(self.layers)
        for i, d in enumerate(self.layers):
            raw = self.blob(d["digest"])
            assert sha256(raw) == d["digest"]
            assert len(raw) == d["size"]
            assert sha256(self.layer_tar(i)) == diff_ids[i]


def read_layout(root: Path, tag: str) -> Image:
    """The image tagged `tag` (org.opencontainers.image.ref.name) in a layout."""
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    found = [
        m
        for m in index["manifests"]
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag
    ]
    assert len(found) == 1, f"{root}: {len(found)} manifests tagged {tag!r}: {index}"
    entry = found[0]
    algo, _, hexd = entry["digest"].partition(":")
    data = (root / "blobs" / algo / hexd).read_bytes()
    manifest = json.loads(data)
    cfg_algo, _, cfg_hex = manifest["config"]["digest"].partition(":")
    config = json.loads((root / "blobs" / cfg_algo / cfg_hex).read_bytes())
    return Image(root, entry["digest"], data, manifest, config, entry)


def layout_blobs(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "blobs" / "sha256").iterdir()}


def _tar_bytes(files: TreeMap) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(files):
            kind, content = files[path]
            ti = tarfile.TarInfo(path)
            ti.mtime = 0
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            elif kind == "link":
                assert isinstance(content, str)
                ti.type = tarfile.SYMTYPE
                ti.linkname = content
                ti.mode = 0o777
                tf.addfile(ti)
            else:
                assert isinstance(content, bytes)
                ti.size = len(content)
                ti.mode = 0o755 if kind == "exec" else 0o644
                tf.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def make_layout(
    root: Path,
    tag: str,
    layers: list[TreeMap],
    *,
    architecture: str = "amd64",
    history: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """Write an OCI layout by hand (not with our code): an image with one gzip
    layer per map, as another tool would make it. Returns the manifest digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    descs, diff_ids = [], []
    for files in layers:
        tar = _tar_bytes(files)
        gz = gzip.compress(tar, mtime=0)
        descs.append({"mediaType": LAYER_GZIP, "digest": put(gz), "size": len(gz)})
        diff_ids.append(sha256(tar))
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history
        or [{"created": "2020-01-01T00:00:00Z", "created_by": "hand-made"} for _ in layers],
    }
    config_bytes = json.dumps(config).encode()
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": put(config_bytes), "size": len(config_bytes)},
        "layers": descs,
    }
    if annotations:
        manifest["annotations"] = annotations
    manifest_bytes = json.dumps(manifest).encode()
    digest = put(manifest_bytes)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = root / "index.json"
    index: dict[str, Any] = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    index["manifests"] = [
        m
        for m in index["manifests"]
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") != tag
    ] + [
        {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    ]
    index_path.write_text(json.dumps(index))
    return digest


# ---- root filesystems ---------------------------------------------------------


def rootfs_tree(root: Path, prefix: str = "") -> TreeMap:
    """The map of an unpacked root filesystem (below `prefix`), read with lstat."""
    base = root / prefix.strip("/") if prefix.strip("/") else root
    out: TreeMap = {}

    def walk(d: Path, rel: str) -> None:
        for name in sorted(os.listdir(d)):
            p = d / name
            path = f"{rel}/{name}" if rel else name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[path] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[path] = ("dir", b"")
                walk(p, path)
            elif stat.S_ISREG(st.st_mode):
                kind = "exec" if st.st_mode & 0o100 else "file"
                out[path] = (kind, p.read_bytes())
            else:
                out[path] = ("other", oct(st.st_mode))

    walk(base, "")
    return out


def rootfs_modes(root: Path) -> dict[str, int]:
    """Permission bits of every path below `root` (symlinks excluded)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                out[str(p.relative_to(root))] = stat.S_IMODE(st.st_mode)
    return out


def umoci_unpack(layout: Path, tag: str, dest: Path) -> Path:
    """`umoci unpack` the image into bundle `dest`; returns its rootfs."""
    if dest.exists():
        shutil.rmtree(dest)
    tool("umoci", "unpack", "--image", f"{layout}:{tag}", str(dest))
    return dest / "rootfs"


def tool(*cmd: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, (
            f"$ {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


# ---- the registry -------------------------------------------------------------


def skopeo_inspect(ref: str, *, raw: bool = False, creds: str | None = None) -> Any:
    """`skopeo inspect docker://REF` (the registry on loopback over plain HTTP)."""
    cmd = ["skopeo", "inspect", "--tls-verify=false"]
    if creds:
        cmd += ["--creds", creds]
    if raw:
        cmd.append("--raw")
    out = tool(*cmd, f"docker://{ref}").stdout
    return json.loads(out)


def skopeo_digest(ref: str, *, creds: str | None = None) -> str:
    return str(skopeo_inspect(ref, creds=creds)["Digest"])


def registry_to_layout(ref: str, layout: Path, tag: str = "t", *, creds: str | None = None) -> Path:
    """`skopeo copy docker://REF oci:LAYOUT:TAG` (a second layout per call is
    fine: the same directory accumulates tags)."""
    cmd = ["skopeo", "copy", "--src-tls-verify=false"]
    if creds:
        cmd += ["--src-creds", creds]
    layout.parent.mkdir(parents=True, exist_ok=True)
    tool(*cmd, f"docker://{ref}", f"oci:{layout}:{tag}")
    return layout


def layout_to_registry(layout: Path, tag: str, ref: str) -> None:
    tool("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{ref}")


def unpack_ref(ref: str, work: Path, *, creds: str | None = None) -> Path:
    """The rootfs of the image at REF: skopeo copy into a layout, umoci unpack."""
    layout = work / "layout"
    if layout.exists():
        shutil.rmtree(layout)
    registry_to_layout(ref, layout, "t", creds=creds)
    return umoci_unpack(layout, "t", work / "bundle")


@dataclass
class RemoteManifest:
    data: bytes
    digest: str  # Docker-Content-Digest
    media_type: str

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.data))


def get_manifest(
    registry: str, repository: str, reference: str, *, creds: str | None = None
) -> RemoteManifest | None:
    """GET the manifest straight from the registry (None on 404)."""
    req = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{reference}",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    if creds:
        req.add_header("Authorization", "Basic " + base64.b64encode(creds.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = resp.read()
            return RemoteManifest(
                data, resp.headers["Docker-Content-Digest"], resp.headers["Content-Type"]
            )
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


# ---- podman ---------------------------------------------------------------------


def podman_tree(ref: str, prefix: str = "") -> TreeMap:
    """`podman pull` REF from the loopback registry, `podman image mount` it,
    and read its root filesystem; the image is removed again."""
    from tests.container.podman import ready_podman

    pm = ready_podman(PODMAN_BASE, "the image tests (podman pull + image mount)")
    pm.run("pull", "--tls-verify=false", ref, timeout=300)
    try:
        mount = pm.out("image", "mount", ref).strip()
        try:
            return rootfs_tree(Path(mount), prefix)
        finally:
            pm.run("image", "unmount", ref, check=False)
    finally:
        pm.run("rmi", "-f", ref, check=False)


# ---- uploads seen by the recording proxy ----------------------------------------


def uploads(requests: list[tuple[str, str, int]]) -> dict[str, int]:
    """Count what a push sent: blob upload sessions started (POST), blob
    uploads finished (PUT with digest), chunk PATCHes, manifest PUTs."""
    counts = {"post": 0, "blob_put": 0, "patch": 0, "manifest_put": 0, "mount": 0}
    for method, path, _status in requests:
        if method == "POST" and "/blobs/uploads/" in path:
            counts["mount" if "mount=" in path else "post"] += 1
        elif method == "PUT" and "/blobs/uploads/" in path:
            counts["blob_put"] += 1
        elif method == "PATCH":
            counts["patch"] += 1
        elif method == "PUT" and "/manifests/" in path:
            counts["manifest_put"] += 1
    return counts


def git_fast_import(repo: Path, stream: bytes) -> None:
    """Feed a fast-import stream to `git fast-import` in a bare repository."""
    if not (repo / "HEAD").exists():
        subprocess.run(
            ["git", "init", "-q", "--bare", "--initial-branch=master", str(repo)], check=True
        )
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=stream, check=True)


# ---- the scenarios' trees (spec Part E) ------------------------------------------

C1_FILES: dict[str, bytes | Entry | None] = {
    "README": b"DataKit snapshot as an image\n",
    "bin/run": exe(b"#!/bin/sh\necho run\n"),
    "docs/a.md": b"# A\n\nfirst version\n",
    "link": link("README"),
}
# IM-3: C2 from C1
C2_CHANGES: dict[str, bytes | Entry | None] = {
    "docs/a.md": b"# A\n\nsecond version, longer than the first\n",
    "docs/b.md": b"# B\n",
    "link": None,
    "bin": None,
}


def free_port() -> int:
    """A port nothing listens on (for "the registry is down")."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
