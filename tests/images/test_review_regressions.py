"""Regressions for the bugs the issue 12 review found, each with a registry
or a layout that behaves as the bug needed: hostile registry answers come
from a small server of our own (Debian's registry never sends them)."""

from __future__ import annotations

import http.server
import io
import json
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from datakit.client import connect
from datakit.images.build import Options, build
from datakit.images.layout import LayoutTarget
from datakit.images.oci import (
    ANN_COMMIT,
    ANN_PREFIX,
    ANN_REF_NAME,
    ANN_REVISION,
    ANN_TREE,
    OCI_MANIFEST,
    digest_of,
)
from datakit.images.registry import Registry, RegistryError

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def hostile_registry(answer: Handler) -> Iterator[tuple[str, list[str]]]:
    """A server answering every request with ``answer``; yields its address
    and the request lines it received."""
    seen: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _any(self) -> None:
            seen.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            answer(self)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def send(
    h: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def test_chunks_accepted_but_never_kept_give_up() -> None:
    """A registry answering every PATCH with 202 and `Range: 0-0` once made
    the client send chunks forever."""

    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        headers = {"Location": "/v2/dk/x/blobs/uploads/u1", "Range": "0-0"}
        send(h, 202, headers=headers)

    data = b"x" * 300
    with hostile_registry(answer) as (address, seen):
        with Registry(address, plain_http=True, chunk_size=100, timeout=10) as reg:
            with pytest.raises(RegistryError, match="without keeping them; giving up"):
                reg.upload_blob("dk/x", digest_of(data), len(data), io.BytesIO(data))
        assert sum(line.startswith("PATCH") for line in seen) < 20


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (  # a body that says gzip and is not
            lambda h: send(
                h, 200, b"not gzip" * 10, {"Content-Encoding": "gzip", "Content-Type": OCI_MANIFEST}
            ),
            "decompressing",
        ),
        (  # a token realm that is not a URL
            lambda h: send(h, 401, headers={"WWW-Authenticate": 'Bearer realm="http://[::1"'}),
            "cannot get a token",
        ),
        (  # a redirect to itself, for ever
            lambda h: send(h, 302, headers={"Location": h.path}),
            "redirects",
        ),
    ],
    ids=["bad-gzip", "bad-realm", "redirect-loop"],
)
def test_hostile_answers_are_one_registry_error(answer: Handler, message: str) -> None:
    """Each of these escaped as an httpx exception (a traceback)."""
    with hostile_registry(answer) as (address, _):
        with Registry(address, plain_http=True, timeout=10) as reg:
            with pytest.raises(RegistryError, match=message) as caught:
                if message == "redirects":
                    reg.get_blob("dk/x", digest_of(b"config"))
                else:
                    reg.get_manifest("dk/x", "latest")
    assert "\n" not in str(caught.value)


def test_token_answer_is_capped() -> None:
    """A token service sending an endless body was read whole into memory."""

    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/token"):
            h.send_response(200)
            h.send_header("Content-Length", str(64 << 20))
            h.end_headers()
            try:
                for _ in range(64):
                    h.wfile.write(b" " * (1 << 20))
            except OSError:
                pass  # the client hung up, as it should
            return
        realm = f"http://{h.headers['Host']}/token"
        send(h, 401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'})

    with hostile_registry(answer) as (address, _):
        with Registry(address, plain_http=True, timeout=30) as reg:
            with pytest.raises(RegistryError, match="sent more than 1048576 bytes"):
                reg.get_manifest("dk/x", "latest")


def _put(args: tuple[str, str]) -> None:
    directory, tag = args
    LayoutTarget(Path(directory), tag).put_manifest(tag.encode(), OCI_MANIFEST)


def test_concurrent_exports_keep_every_tag(tmp_path: Path) -> None:
    """index.json was read, changed and replaced without a lock: processes
    writing different tags at once lost some of them."""
    layout = tmp_path / "L"
    LayoutTarget(layout, "t").put_blob_bytes(digest_of(b"x"), b"x")  # the layout exists
    tags = [f"t{i}" for i in range(16)]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.map(_put, [(str(layout), tag) for tag in tags] * 3)
    index = json.loads((layout / "index.json").read_text())
    names = sorted(m["annotations"][ANN_REF_NAME] for m in index["manifests"])
    assert names == sorted(tags)


@pytest.mark.parametrize("annotations", ["x", ["y"], None])
def test_malformed_index_entries_are_skipped(tmp_path: Path, annotations: object) -> None:
    """An index entry whose annotations are not an object crashed both the
    read of the tag and its replacement."""
    layout = tmp_path / "L"
    target = LayoutTarget(layout, "t")
    target.put_blob_bytes(digest_of(b"x"), b"x")
    junk = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"x"), "size": 1}
    junk["annotations"] = annotations  # type: ignore[assignment]
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [junk]}))
    assert target.current() is None
    digest = target.put_manifest(b"{}", OCI_MANIFEST)
    manifests = json.loads((layout / "index.json").read_text())["manifests"]
    assert manifests[0] == junk and manifests[1]["digest"] == digest


def test_a_tag_naming_a_missing_manifest_is_written_anew(tmp_path: Path) -> None:
    layout = tmp_path / "L"
    target = LayoutTarget(layout, "t")
    digest = target.put_manifest(b"{}", OCI_MANIFEST)
    (layout / "blobs" / "sha256" / digest.split(":")[1]).unlink()
    assert target.current() is None


def test_registry_text_in_the_reason_stays_on_one_line(tmp_path: Path) -> None:
    """The tag's revision annotation was printed raw: a newline in it split
    the one-line result."""
    with connect(tmp_path / "db") as db:
        with db.branch("master").transaction() as t:
            t.create_file("README", b"hello\n")
            t.commit("c1")
        head = db.branch("master").head()
        assert head is not None
        target = LayoutTarget(tmp_path / "L", "t")
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        target.put_blob_bytes(digest_of(config), config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_MANIFEST, "digest": digest_of(config), "size": len(config)},
            "layers": [],
            "annotations": {
                ANN_REVISION: head.id + "\nforged",
                ANN_TREE: head.tree_id,
                ANN_PREFIX: "/",
                ANN_COMMIT: "x",
            },
        }
        target.put_manifest(json.dumps(manifest).encode(), OCI_MANIFEST)
        outcome = build(db, head, target, Options())
    assert str(outcome).count("\n") == 0
    assert outcome.how == f"full (its commit {head.id}\\nforged is not in this database)"
