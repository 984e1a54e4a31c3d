"""Helpers of the client conformance suite (backend-neutral: they only use
the public client API)."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any

from datakit.client import AGAIN, Branch, Connection, Dir, File, Link, Tree

UNKNOWN_COMMIT = "a3827c5d1a2ba8c6a40eded5598dba8d3835fb35"
EVENT_TIMEOUT = 10.0
# How long a watcher must stay silent to count as "still pending".
QUIET = 0.3


def commit_files(branch: Branch, files: dict[str, bytes], message: str = "commit") -> None:
    """One transaction writing each file (creating parent directories)."""
    with branch.transaction() as t:
        for path, data in files.items():
            parent = path.rpartition("/")[0]
            t.make_dirs(parent)
            t.create_or_replace_file(path, data)
        t.commit(message)


def describe(node: object) -> object:
    """A watch event as a plain value: trees become ``("dir", names)``."""
    if isinstance(node, Tree):
        return ("dir", node.read_dir(""))
    return node


class Watcher:
    """``wait_for_path`` running in a thread, recording every event until
    its cancel switch is turned off."""

    def __init__(self, branch: Branch, path: str) -> None:
        self.events: queue.Queue[object] = queue.Queue()
        self.cancel = threading.Event()
        self.result: object = None
        self._branch = branch
        self._path = path
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        def fn(node: object) -> object:
            self.events.put(describe(node))
            return AGAIN

        try:
            self.result = self._branch.wait_for_path(self._path, fn, cancel=self.cancel)
        except BaseException as exc:  # surfaced by next() / stop()
            self.result = exc
            self.events.put(exc)

    def next(self, timeout: float = EVENT_TIMEOUT) -> object:
        event = self.events.get(timeout=timeout)
        if isinstance(event, BaseException):
            raise event
        return event

    def assert_pending(self) -> None:
        try:
            event = self.events.get(timeout=QUIET)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected watch event {event!r}")

    def stop(self) -> object:
        self.cancel.set()
        self._thread.join(EVENT_TIMEOUT)
        assert not self._thread.is_alive(), "watch did not end after cancel"
        return self.result


def dump(tree: Tree, prefix: str = "") -> dict[str, tuple[str, bytes]]:
    """Every file below ``prefix`` as path -> (kind, content)."""
    out: dict[str, tuple[str, bytes]] = {}
    for name in tree.read_dir(prefix):
        path = f"{prefix}/{name}" if prefix else name
        st = tree.stat(path)
        assert st is not None
        if st.kind.value == "dir":
            out.update(dump(tree, path))
        elif st.kind.value == "link":
            out[path] = ("link", tree.read_link(path).encode())
        else:
            out[path] = (st.kind.value, tree.read_file(path))
    return out


def git_tree_hash(tree: Tree, prefix: str = "") -> str:
    """The Git tree id of ``tree`` at ``prefix``, computed from what the API
    reads (so equal hashes mean equal names, kinds and contents)."""

    def obj(kind: bytes, body: bytes) -> bytes:
        return hashlib.sha1(kind + b" %d\0" % len(body) + body).digest()

    entries: list[tuple[bytes, bytes, bytes]] = []
    for name in tree.read_dir(prefix):
        path = f"{prefix}/{name}" if prefix else name
        value: Any = tree.read(path)
        st = tree.stat(path)
        assert st is not None
        if isinstance(value, Dir):
            sha = bytes.fromhex(git_tree_hash(tree, path))
            entries.append((name.encode() + b"/", b"40000", sha))
            continue
        if isinstance(value, Link):
            mode, body = b"120000", value.target.encode()
        else:
            assert isinstance(value, File)
            mode, body = (b"100755" if st.kind.value == "exec" else b"100644"), value.data
        entries.append((name.encode(), mode, obj(b"blob", body)))
    entries.sort()
    raw = b"".join(mode + b" " + key.rstrip(b"/") + b"\0" + sha for key, mode, sha in entries)
    return obj(b"tree", raw).hex()


def head_or_fail(conn: Connection, branch: str) -> Any:
    head = conn.branch(branch).head()
    assert head is not None, f"{branch} has no head"
    return head
