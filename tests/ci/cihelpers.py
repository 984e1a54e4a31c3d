"""The harness of the DataKitCI scenarios (spec ci.md Part C), end to end.

Everything is a real process, as a user runs it: a `datakit serve` (memory
store), the local bridge publishing a repository made with `git`, and the
CI itself (`python -m datakit ci ...`), whose web UI and metrics addresses
are read from what it announces on stderr (port 0, like the bridges). The
tests look only at what the CI leaves behind: commits in DataKit (statuses on
`github-metadata`, result, history and `commit-index` branches), its HTTP
answers, and the processes in /proc.

Job commands carry a unique *marker* argument (`exec -a <marker> sleep N`,
or the marker inside a `bash -c` script), so a test can find a job's
processes, their process group, and whatever a cancelled or timed-out job
left behind. The `ci_stack` fixture fails the test if a marked process is
still alive at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datakit.ci import config as ci_config
from datakit.ci import naming
from datakit.client import AGAIN, Branch, Commit, Connection, Tree, connect
from datakit.github.model import Repo
from tests.bridges import localbridge
from tests.bridges.ghbridge import read
from tests.gitrepo import git

ROOT = Path(__file__).resolve().parents[2]
META = "github-metadata"
WEB_UI = "http://ci.example/"
TIMEOUT = 60.0  # generous: the machine is shared; nothing asserts speed
REPO = "me/p"

_ANNOUNCED_WEB = re.compile(r"[Ww]eb UI at (http://[^/\s]+)/")
_ANNOUNCED_METRICS = re.compile(r"[Mm]etrics at (http://[^/\s]+/metrics)")


# --- configuration ------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"no TOML for {value!r}")


def toml_config(projects: list[dict[str, Any]]) -> str:
    """The spec B.2 file for these projects; each project's ``job`` key is
    its list of ``[[project.job]]`` tables."""
    out: list[str] = []
    for project in projects:
        out.append("[[project]]")
        out += [f"{k} = {_toml_value(v)}" for k, v in project.items() if k != "job"]
        for job in project.get("job", []):
            out += ["", "[[project.job]]"]
            out += [f"{k} = {_toml_value(v)}" for k, v in job.items()]
        out.append("")
    return "\n".join(out)


# --- the CI process -------------------------------------------------------------


def ci_env() -> dict[str, str]:
    """The environment of the CI process: this worktree's package first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env.pop("DATAKIT_VERBOSE", None)
    return env


class CIProcess:
    """`python -m datakit ci ARGS`; stderr collected line by line (and
    copied to ``log_path``) so tests can read the announced addresses and
    show the log when something fails."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.web: str | None = None  # "http://127.0.0.1:PORT", no slash
        self.metrics: str | None = None  # "http://127.0.0.1:PORT/metrics"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "datakit", "ci", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=ci_env(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with open(self.log_path, "ab") as copy:
            for raw in self.proc.stderr:
                copy.write(raw)
                copy.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self.changed:
                    self.lines.append(line)
                    if self.web is None and (m := _ANNOUNCED_WEB.search(line)):
                        self.web = m.group(1)
                    if self.metrics is None and (m := _ANNOUNCED_METRICS.search(line)):
                        self.metrics = m.group(1)
                    self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def log(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def tail(self, n: int = 60) -> str:
        with self.changed:
            return "\n".join(self.lines[-n:])

    def wait_started(self, timeout: float = TIMEOUT) -> None:
        """Until both addresses are announced; fails if the CI exits first."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.web is None or self.metrics is None:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"the CI did not announce its web UI and metrics "
                        f"(status {self.proc.poll()}):\n" + "\n".join(self.lines[-60:])
                    )
                self.changed.wait(min(left, 0.2))

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the CI did not exit:\n" + self.tail()) from None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM; its exit status (a clean stop is 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the CI did not stop on SIGTERM:\n" + self.tail()) from None
        finally:
            self._reader.join(10)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(10)


# --- processes ------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """One live process as /proc shows it. ``start`` (clock ticks after
    boot) tells a process from a later one that reused its pid."""

    pid: int
    ppid: int
    pgid: int
    state: str
    start: int
    cmdline: str

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start)


def processes() -> list[Proc]:
    """Every process that is not a zombie (a zombie is dead; whether its
    parent reaps it is not the CI's business when the parent is init)."""
    out: list[Proc] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            continue
        out.append(Proc(int(entry), int(fields[1]), int(fields[2]), fields[0],
                        int(fields[19]), cmdline))
    return out


def with_marker(marker: str) -> list[Proc]:
    return [p for p in processes() if marker in p.cmdline]


def in_group(pgid: int) -> list[Proc]:
    return [p for p in processes() if p.pgid == pgid]


def alive(procs: Iterable[Proc]) -> list[Proc]:
    """Those of ``procs`` that still run (same pid, same start time)."""
    now = {p.key for p in processes()}
    return [p for p in procs if p.key in now]


def wait_until(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT,
               why: Callable[[], str] = lambda: "") -> Any:
    """Poll ``predicate`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s\n{why()}")
        time.sleep(0.05)


def marker() -> str:
    return f"dkci-marker-{uuid.uuid4().hex[:12]}"


def sleeper(seconds: float, mark: str) -> list[str]:
    """An argv that sleeps with ``mark`` as its process name (bash's
    ``exec -a``): the sleeping process itself carries the marker."""
    return ["bash", "-c", f"exec -a {mark} sleep {seconds}"]


# --- reading DataKit ----------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    state: str
    description: str | None
    target_url: str | None


def status_dir(sha: str, job: str, repo: str = REPO) -> str:
    return f"{repo}/commit/{sha}/status/ci/datakit/{job}"


def read_status(tree: Tree, sha: str, job: str, repo: str = REPO) -> Status | None:
    """The status ``ci/datakit/<job>`` of ``sha`` in a github-metadata tree."""
    base = status_dir(sha, job, repo)
    state = read(tree, f"{base}/state")
    if state is None:
        return None
    descr, url = read(tree, f"{base}/description"), read(tree, f"{base}/target_url")
    return Status(
        state.decode().strip(),
        None if descr is None else descr.decode().strip(),
        None if url is None else url.decode().strip(),
    )


def statuses(tree: Tree, repo: str = REPO) -> dict[tuple[str, str], Status]:
    """Every ``ci/datakit/*`` status of the repository: (sha, job) -> status."""
    out: dict[tuple[str, str], Status] = {}
    try:
        shas = tree.read_dir(f"{repo}/commit")
    except Exception:
        return out
    for sha in shas:
        try:
            jobs = tree.read_dir(f"{repo}/commit/{sha}/status/ci/datakit")
        except Exception:
            continue
        for job in jobs:
            found = read_status(tree, sha, job, repo)
            if found is not None:
                out[(sha, job)] = found
    return out


def first_parent(branch: Branch) -> list[Commit]:
    """First-parent history, newest first."""
    out: list[Commit] = []
    head = branch.head()
    while head is not None:
        out.append(head)
        head = head.parents[0] if head.parents else None
    return out


def all_commits(head: Commit | None) -> list[Commit]:
    """Every commit reachable from ``head`` (merges followed)."""
    out: list[Commit] = []
    todo = [head] if head is not None else []
    seen: set[str] = set()
    while todo:
        c = todo.pop()
        if c.id in seen:
            continue
        seen.add(c.id)
        out.append(c)
        todo.extend(c.parents)
    return out


def result_branches(conn: Connection, job: str, sha: str) -> list[str]:
    """Result branches of ``job`` (a plain name: nothing to escape) on ``sha``:
    ``shell-of-<job>-<defhash>-on-<sha>`` (spec B.5)."""
    return [b for b in conn.branches()
            if b.startswith(f"shell-of-{job}-") and b.endswith(f"-on-{sha}")]


def expected_result_branch(path: Path, job: str, sha: str, repo: str = REPO) -> str:
    """The result branch name the CI must use, from the configuration file
    and the naming rules (for live logs: the branch has no commit yet)."""
    project = ci_config.load_config(path).project(Repo.parse(repo))
    assert project is not None
    spec = project.job(job)
    assert spec is not None
    return str(naming.result_branch(spec, sha))


def branch_heads(conn: Connection) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in conn.branches():
        head = conn.branch(name).head()
        if head is not None:
            out[name] = head.id
    return out


# --- the stack --------------------------------------------------------------------


def make_source_repo(path: Path) -> str:
    """A repository with a work tree, branch master at one commit (``m1``),
    which holds a README; its SHA."""
    git(None, "init", "-q", "-b", "master", str(path))
    (path / "README").write_text("m1\n")
    git(path, "add", "README")
    git(path, "commit", "-q", "-m", "m1")
    return git(path, "rev-parse", "HEAD")


@dataclass
class CIStack:
    """A server, a source repository, maybe a bridge, and the CI (re)started
    with a configuration written by ``configure``."""

    tmp: Path
    address: str  # the client's: tcp://127.0.0.1:PORT or unix:///PATH
    conn: Connection
    repo: Path
    m1: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    ci: CIProcess | None = None
    runs: list[CIProcess] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    bridge_log: Path | None = None

    @property
    def store(self) -> str:
        """The CI's and the bridge's --metadata-store: upstream's
        ``tcp:HOST:PORT`` form for a TCP server."""
        if self.address.startswith("tcp://"):
            return "tcp:" + self.address.removeprefix("tcp://")
        return self.address

    @property
    def config_path(self) -> Path:
        return self.tmp / "ci.toml"

    @property
    def token_file(self) -> Path:
        path = self.tmp / "token"
        if not path.exists():
            path.write_text(self.token + "\n")
        return path

    @property
    def workdir(self) -> Path:
        return self.tmp / "work"

    @property
    def meta(self) -> Branch:
        return self.conn.branch(META)

    def marker(self) -> str:
        """A fresh marker; the fixture checks no process carries it at the end."""
        m = marker()
        self.markers.append(m)
        return m

    def counter(self, name: str) -> Path:
        """A file a job appends one line to each time it runs."""
        return self.tmp / f"runs-{name}"

    def runs_of(self, name: str) -> int:
        path = self.counter(name)
        return len(path.read_text().splitlines()) if path.exists() else 0

    def counting(self, name: str, then: str = "true") -> list[str]:
        """A job's argv (bash) that counts its runs, then does ``then``."""
        return ["bash", "-c", f"echo run >> {self.counter(name)}; {then}"]

    # configuration and the CI process

    def configure(self, jobs: list[dict[str, Any]], *, repo: str = REPO,
                  source: Path | str | None = None, **project: Any) -> Path:
        body = {"repo": repo, "source": str(source or self.repo), **project, "job": jobs}
        self.config_path.write_text(toml_config([body]))
        return self.config_path

    def ci_args(self, *extra: str) -> list[str]:
        return [
            "--config", str(self.config_path),
            "--metadata-store", self.store,
            "--listen", "127.0.0.1:0",
            "--listen-prometheus", "127.0.0.1:0",
            "--workdir", str(self.workdir),
            "--web-ui", WEB_UI,
            "--token-file", str(self.token_file),
            "-v",  # info: what each run did, for the failure messages
            *extra,
        ]

    def start(self, *extra: str, wait: bool = True) -> CIProcess:
        """Start the CI (stopping a running one first)."""
        if self.ci is not None and self.ci.proc.poll() is None:
            self.stop()
        self.ci = CIProcess(self.ci_args(*extra), self.tmp / f"ci-{len(self.runs)}.log")
        self.runs.append(self.ci)
        if wait:
            self.ci.wait_started()
        return self.ci

    def stop(self) -> None:
        """SIGTERM; a clean stop is status 0 and no traceback."""
        assert self.ci is not None
        status = self.ci.stop()
        assert status == 0, f"CI exit status {status}:\n{self.ci.tail()}"
        assert "Traceback" not in self.ci.log, self.ci.log

    def kill(self) -> None:
        assert self.ci is not None
        self.ci.kill()

    def why(self) -> str:
        """What to show when a wait fails: the CI's log and the statuses."""
        parts = []
        if self.ci is not None:
            parts.append("CI log (tail):\n" + self.ci.tail())
        head = self.meta.head()
        if head is not None:
            parts.append(f"statuses: {statuses(head.tree())}")
        return "\n".join(parts)

    # the source repository

    def commit(self, message: str, branch: str = "master") -> str:
        """A commit on ``branch`` of the source repository (created from the
        current one if new), changing README; its SHA."""
        exists = git(self.repo, "branch", "--list", branch)
        git(self.repo, "checkout", "-q", *([] if exists else ["-b"]), branch)
        (self.repo / "README").write_text(message + "\n")
        git(self.repo, "add", "README")
        git(self.repo, "commit", "-q", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def wait_ref(self, ref: str, sha: str, repo: str = REPO) -> Commit:
        """Until github-metadata has ``<repo>/ref/<ref>/head`` = sha."""
        return self.wait_meta(
            lambda t: read(t, f"{repo}/ref/{ref}/head") == f"{sha}\n".encode(),
            f"ref {ref} at {sha} on github-metadata",
        )

    # github-metadata

    def wait_meta(self, check: Callable[[Tree], bool], what: str,
                  timeout: float = TIMEOUT) -> Commit:
        """The first head of github-metadata whose tree satisfies ``check``."""
        found: list[Commit] = []

        def on_head(head: Commit | None) -> object:
            if head is not None and check(head.tree()):
                found.append(head)
                return True
            return AGAIN

        self.meta.wait_for_head(on_head, timeout=timeout)
        if not found:
            raise AssertionError(f"{what}: never seen within {timeout} s\n{self.why()}")
        return found[0]

    def status(self, sha: str, job: str, repo: str = REPO) -> Status | None:
        head = self.meta.head()
        return None if head is None else read_status(head.tree(), sha, job, repo)

    def wait_status(self, sha: str, job: str, state: str | Callable[[Status], bool],
                    timeout: float = TIMEOUT, repo: str = REPO) -> Status:
        """Until status ``ci/datakit/<job>`` of ``sha`` is in ``state`` (a
        state name, or a predicate on the status)."""
        def ok(s: Status | None) -> bool:
            if s is None:
                return False
            return s.state == state if isinstance(state, str) else state(s)

        head = self.wait_meta(lambda t: ok(read_status(t, sha, job, repo)),
                              f"status {job} of {sha} reaching {state}", timeout)
        found = read_status(head.tree(), sha, job, repo)
        assert found is not None
        return found

    def wait_finished(self, sha: str, *jobs: str, timeout: float = TIMEOUT) -> dict[str, Status]:
        return {job: self.wait_status(sha, job, lambda s: s.state in ("success", "failure"),
                                      timeout) for job in jobs}

    def wait_history(self, branch: str, sha: str, jobs: dict[str, str]) -> Commit:
        """Until the history branch's head is about ``sha`` with these job
        states (the history is written just after the statuses)."""
        def done() -> Commit | None:
            head = self.conn.branch(branch).head()
            if head is None or (read(head.tree(), "source-commit") or b"").strip() != sha.encode():
                return None
            for job, state in jobs.items():
                raw = read(head.tree(), f"job/{job}/output")
                if raw is None or json.loads(raw)["result"]["status"] != state:
                    return None
            return head

        found: Commit = wait_until(done, f"{branch} recording {jobs} for {sha}", why=self.why)
        return found

    # processes

    def wait_marker(self, mark: str, exclude: Iterable[Proc] = (),
                    named: bool = False) -> list[Proc]:
        """Until a process (not in ``exclude``) carries ``mark`` (``named``:
        as its name, argv[0], which ``exec -a`` sets); those."""
        old = {p.key for p in exclude}

        def found() -> list[Proc]:
            return [p for p in with_marker(mark) if p.key not in old
                    and (not named or p.cmdline.split(" ", 1)[0] == mark)]

        return wait_until(found, f"a process marked {mark}", why=self.why)

    def wait_gone(self, procs: Iterable[Proc], what: str, timeout: float = TIMEOUT) -> None:
        procs = list(procs)
        wait_until(lambda: not alive(procs), what, timeout,
                   why=lambda: f"still alive: {alive(procs)}\n{self.why()}")

    # HTTP

    def http(self) -> Any:
        import httpx

        assert self.ci is not None and self.ci.web is not None
        return httpx.Client(base_url=self.ci.web, timeout=30, follow_redirects=False)

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _marked(stack: CIStack) -> list[Proc]:
    return [p for m in stack.markers for p in with_marker(m)]


def stray_check(stack: CIStack) -> None:
    """After the CI stopped: no process carries one of the test's markers
    (waits a little for short sleeps a killed CI could not reap)."""
    deadline = time.monotonic() + 15
    while _marked(stack) and time.monotonic() < deadline:
        time.sleep(0.1)
    strays = _marked(stack)
    assert not strays, f"stray job processes after the CI stopped: {strays}"


def _clean_up(stack: CIStack) -> None:
    """Whatever a failed test left: CIs stopped, marked processes killed."""
    for run in stack.runs:
        if run.proc.poll() is None:
            run.proc.terminate()
            try:
                run.proc.wait(20)
            except subprocess.TimeoutExpired:
                run.kill()
    for p in _marked(stack):
        with suppress(OSError):
            os.kill(p.pid, signal.SIGKILL)


@contextmanager
def ci_stack_on(tmp: Path, address: str | int, *, bridge: bool = True) -> Iterator[CIStack]:
    """The stack of Part C on the server at ``address`` (a client address,
    or the port of one on 127.0.0.1): repository ``tmp/p`` with
    master at m1, the local bridge ``me/p:tmp/p`` (unless ``bridge`` is
    false), the CI started by the test. At the end a running CI must stop
    cleanly on SIGTERM and leave no marked process."""
    repo = tmp / "p"
    m1 = make_source_repo(repo)
    if isinstance(address, int):
        address = f"tcp://127.0.0.1:{address}"
    with connect(address, timeout=30) as conn:
        stack = CIStack(tmp, address, conn, repo, m1)
        try:
            if bridge:
                stack.bridge_log = tmp / "bridge.log"
                with localbridge.bridge("--metadata-store", stack.store, f"{REPO}:{repo}",
                                        log=stack.bridge_log):
                    stack.wait_ref("heads/master", m1)
                    yield stack
            else:
                yield stack
            if stack.ci is not None and stack.ci.proc.poll() is None:
                stack.stop()
            stray_check(stack)
        finally:
            _clean_up(stack)
