"""Run the GitHub bridge as a real process against a real `datakit serve`
and the fake GitHub, and watch `github-metadata` from the tests.

The bridge is `python -m datakit bridge github ...` (the command users run),
its stderr collected line by line so tests can wait for what it logs; it is
stopped with SIGTERM, and a clean exit (status 0) is part of every test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from datakit.client import AGAIN, Branch, Commit, Connection, Tree, connect
from tests.operations.procs import datakit_process

BRANCH = "github-metadata"
TIMEOUT = 10.0
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Bridge:
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def log(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_log(self, pattern: str, timeout: float = TIMEOUT, count: int = 1) -> str:
        """Wait until `count` lines of the log match the regex `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"bridge log never matched {pattern!r} x{count} "
                        f"(status {self.proc.poll()}):\n" + "\n".join(self.lines[-60:])
                    )
                self.changed.wait(min(left, 0.2))

    def steps(self) -> int:
        """Steps the bridge finished (it logs one line each at -v)."""
        with self.changed:
            return sum(1 for line in self.lines if "step done" in line)

    def wait_steps(self, n: int, timeout: float = TIMEOUT) -> None:
        self.wait_log("step done", timeout, count=n)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit status (a clean stop is 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the bridge did not stop on SIGTERM:\n" + self.log) from None


def bridge_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "datakit", "bridge", "github", *args]


def bridge_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env.pop("GITHUB_TOKEN", None)
    env.pop("DATAKIT_VERBOSE", None)
    env.update(extra)
    return env


@contextmanager
def github_bridge(*args: str, check_exit: bool = True, **env: str) -> Iterator[Bridge]:
    """The bridge with `args` (add -v yourself to see its steps); stopped
    with SIGTERM at the end, which must give exit status 0."""
    proc = subprocess.Popen(
        bridge_command(*args), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        env=bridge_env(**env),
    )
    bridge = Bridge(proc)

    def read() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            with bridge.changed:
                bridge.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                bridge.changed.notify_all()
        with bridge.changed:
            bridge.changed.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield bridge
    finally:
        status = bridge.stop()
        reader.join(10)
        if proc.stderr:
            proc.stderr.close()
        if check_exit:
            assert status == 0, f"bridge exit status {status}:\n{bridge.log}"
            assert "Traceback" not in bridge.log, bridge.log


@contextmanager
def datakit_server(*args: str) -> Iterator[str]:
    """A real `datakit serve` process (memory, or `--git PATH`): its address."""
    with datakit_process(*args) as (port, _metrics, _proc):
        yield f"tcp://127.0.0.1:{port}"


def bridge_args(
    address: str, github_url: str, *more: str, resync: float | None = None
) -> list[str]:
    """The spec's setup: -d ADDRESS --github-url URL -r u/r --no-resync -v
    (`resync`: --resync-interval instead of --no-resync)."""
    timer = ["--no-resync"] if resync is None else ["--resync-interval", str(resync)]
    return ["-d", address, "--github-url", github_url, "-r", "u/r", *timer, "-v", *more]


def read(tree: Tree, path: str) -> bytes | None:
    try:
        return tree.read_file(path)
    except Exception:
        return None


def files(tree: Tree, under: str = "u/r") -> dict[str, bytes]:
    """Every file below `under`, by path relative to it."""
    out: dict[str, bytes] = {}

    def walk(path: str) -> None:
        try:
            names = tree.read_dir(path)
        except Exception:
            return
        for name in names:
            child = f"{path}/{name}" if path else name
            if tree.exists_dir(child):
                walk(child)
            else:
                out[child.removeprefix(under + "/") if under else child] = tree.read_file(child)

    walk(under)
    return out


def wait_for(
    branch: Branch, predicate: Callable[[Tree], bool], timeout: float = TIMEOUT
) -> Commit:
    """Watch `branch` until `predicate(head tree)` holds; the head then."""
    found: list[Commit] = []

    def check(head: Commit | None) -> object:
        if head is not None and predicate(head.tree()):
            found.append(head)
            return True
        return AGAIN

    branch.wait_for_head(check, timeout=timeout)
    if not found:
        head = branch.head()
        now = files(head.tree(), "") if head is not None else {}
        raise AssertionError(f"{branch.name} never reached the expected state; it holds {now}")
    return found[0]


def wait_file(branch: Branch, path: str, data: bytes | None, timeout: float = TIMEOUT) -> Commit:
    """Wait until `path` holds `data` (None: until it is gone)."""
    return wait_for(branch, lambda t: read(t, path) == data, timeout)


def client_commit(
    branch: Branch, writes: dict[str, bytes | None], message: str = "client"
) -> None:
    """Commit like a client (DataKitCI, a script): files written, None removes."""
    with branch.transaction() as t:
        for path, data in writes.items():
            if data is None:
                t.remove(path)
            else:
                if "/" in path:
                    t.make_dirs(path.rsplit("/", 1)[0])
                t.create_or_replace_file(path, data)
        t.commit(message)


_settles = iter(range(1, 1 << 30))


def settle(bridge: Bridge, branch: Branch, timeout: float = TIMEOUT) -> Commit:
    """Commit an unrelated file and wait for a bridge step that started from
    that commit or from a later one (a step already running when the marker
    landed merges it into its own commit, and the next step starts from
    that merge): everything before it has been handled. If the branch head
    is still the returned commit afterwards, that step committed nothing."""
    client_commit(branch, {"notes/settle": f"{next(_settles)}\n".encode()}, "settle")
    marker = branch.head()
    assert marker is not None
    step = re.compile(r"step done: .* from ([0-9a-f]{40})")
    deadline = time.monotonic() + timeout
    checked: set[str] = set()
    while True:
        for match in filter(None, map(step.search, bridge.log.splitlines())):
            base = match.group(1)
            if base not in checked:
                checked.add(base)
                if _descends(branch.head(), base, marker.id):
                    return marker
        if time.monotonic() > deadline or bridge.proc.poll() is not None:
            raise AssertionError(
                f"no bridge step started from {marker.id} or later "
                f"(status {bridge.proc.poll()}):\n{bridge.log[-6000:]}"
            )
        time.sleep(0.05)


def _descends(head: Commit | None, commit: str, ancestor: str) -> bool:
    """Whether `commit` is `ancestor` or has it in its history, looking
    only at the history of `head` (where every commit of the branch is)."""
    todo = [head] if head is not None else []
    seen: set[str] = set()
    found: Commit | None = None
    while todo:  # find `commit` in the branch's history
        c = todo.pop()
        if c.id in seen:
            continue
        seen.add(c.id)
        if c.id == commit:
            found = c
            break
        todo.extend(c.parents)
    todo, seen = ([found] if found is not None else []), set()
    while todo:
        c = todo.pop()
        if c.id == ancestor:
            return True
        if c.id not in seen:
            seen.add(c.id)
            todo.extend(c.parents)
    return False


def history(branch: Branch) -> list[Commit]:
    """First-parent history, newest first."""
    out = []
    head = branch.head()
    while head is not None:
        out.append(head)
        head = head.parents[0] if head.parents else None
    return out


@contextmanager
def metadata(address: str) -> Iterator[tuple[Connection, Branch]]:
    with connect(address, timeout=30) as conn:
        yield conn, conn.branch(BRANCH)
