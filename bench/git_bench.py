"""The Git endpoint (``--listen-git``) against ``git daemon``, 9p latency
during clones, and replica lag.

Run: python bench/git_bench.py [--commits 10000] [--rounds 3] [--stores memory,git]
                               [--protocols 0,2] [--only clone,latency,replica]

Three parts, each printing a table:

* **clone and fetch**: a history of ``--commits`` commits (each changes one
  small file of 100, in 10 directories) is built once with ``git
  fast-import`` into a bare repository and repacked (``git repack -a -d``),
  as a served repository usually is. ``git daemon --export-all`` serves it;
  a ``datakit serve`` memory store is filled from that daemon through the
  client library's ``fetch`` (the 9p ``remotes/`` directory) and a
  fast-forward of ``master``, and a ``datakit serve --git`` store is a copy
  of the repository: the same commit ids everywhere (checked with ``git
  ls-remote``). Timed: ``git clone --bare`` (protocol v0 and v2, full and
  ``--depth 1``) and ``git fetch`` of 10 commits added afterwards (the same
  way: fast-import into the daemon's repository, fetched by the datakit
  stores), from a copy of a clone made before them. Rounds are interleaved
  (daemon, memory, ``--git``, daemon, ...); best and median of
  ``--rounds``, and the ratio ours/git of each (above 1: slower than git).
  Bytes on the wire: for datakit, its ``datakit_git_*_bytes_total``
  metrics over one round; for git daemon, a relay in this script counting
  both directions in an untimed warm-up run. "v2" rows say which protocol
  the server answered in (a server that does not speak v2 answers v0, and
  git accepts that).
* **9p commit latency during clones**: one-file commits through
  ``datakit.client`` to another branch of the memory store, first with
  nothing else running, then while ``git clone --bare`` of the history from
  this server runs in a loop, then (the control) while the same clone runs
  in a loop from git daemon (the machine as busy with clones, our server
  not serving them): p50/p99/max and the ratios to the quiet phase.
* **replica lag**: a primary (memory store, ``--listen-git``) and a replica
  (``datakit serve --mirror git://...``); commits at ``--rate`` per second
  for ``--seconds`` on the primary while a client of the replica waits for
  its heads (``head.live`` through ``wait_for_head``). The lag of a commit
  is the time from its commit returning on the primary to the replica's
  first head at or after it. Prints "skipped: --mirror not available" when
  the replica does not follow its primary.

Everything runs on this machine in the same invocation: compare the ratios,
not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
FILES = 100  # files the history changes in turn, FILES // 10 per directory


def _client() -> Any:
    """``datakit.client`` of this checkout (not whatever is installed)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import datakit.client

    return datakit.client


# -- the history --------------------------------------------------------------------


def fast_import_stream(first: int, count: int, on_top: bool) -> bytes:
    """Commits ``first`` .. ``first + count - 1`` on refs/heads/master, each
    changing one file; fixed dates, so the ids are the same every run."""
    out = ["reset refs/heads/master\nfrom refs/heads/master^0\n" if on_top else ""]
    for i in range(first, first + count):
        message = f"change {i}\n"
        data = f"commit {i}\n"
        out.append(
            "commit refs/heads/master\n"
            f"committer bench <bench@example.com> {1_700_000_000 + i} +0000\n"
            f"data {len(message)}\n{message}"
            f"M 100644 inline d{i % 10}/f{i % FILES}\n"
            f"data {len(data)}\n{data}\n"
        )
    return "".join(out).encode()


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, input=stdin, capture_output=True, check=False
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git {' '.join(args)}: exit {proc.returncode}: {err}")
    return proc.stdout.decode(errors="replace")


def build_history(repo: Path, commits: int) -> None:
    git("init", "-q", "--bare", str(repo))
    git("--git-dir", str(repo), "fast-import", "--quiet",
        stdin=fast_import_stream(0, commits, on_top=False))  # fmt: skip
    git("--git-dir", str(repo), "repack", "-a", "-d", "-q")


def add_commits(repo: Path, first: int, count: int) -> None:
    git("--git-dir", str(repo), "fast-import", "--quiet",
        stdin=fast_import_stream(first, count, on_top=True))  # fmt: skip


def remote_master(url: str) -> str:
    out = git("ls-remote", url, "refs/heads/master")
    return out.split()[0] if out else ""


def spoken_protocol(url: str, version: int) -> int:
    """The protocol the server answers a client asking for ``version`` in."""
    env = {**GIT_ENV, "GIT_TRACE_PACKET": "1"}
    proc = subprocess.run(
        ["git", "-c", f"protocol.version={version}", "ls-remote", url],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    return 2 if re.search(rb"< version 2\b", proc.stderr) else 0


# -- servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def git_daemon(base: Path) -> Iterator[int]:
    """The port of a git daemon exporting every repository under ``base``."""
    port = free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--export-all", f"--base-path={base}", "--reuseaddr",
         "--listen=127.0.0.1", f"--port={port}", str(base)],
        env=GIT_ENV, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        yield port
    finally:
        stop(proc)


def cpu_seconds(pid: int) -> float:
    """CPU a process used so far (user + system)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class InetdGit:
    """``git daemon --inetd`` started here for each connection, so that its
    CPU (upload-pack and pack-objects included) is known: git daemon
    itself leaves its children to the kernel, which counts their CPU
    nowhere. Used for untimed runs only."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.cpu = 0.0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                proc = subprocess.Popen(
                    ["git", "daemon", "--inetd", "--export-all", f"--base-path={self.base}",
                     str(self.base)],
                    stdin=conn.fileno(), stdout=conn.fileno(), stderr=subprocess.DEVNULL,
                    env=GIT_ENV,
                )  # fmt: skip
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu += usage.ru_utime + usage.ru_stime

    def close(self) -> None:
        self.listener.close()


_ANNOUNCED = {
    "9p": re.compile(rb"[Ll]istening on tcp://127\.0\.0\.1:(\d+)"),
    "metrics": re.compile(rb"[Mm]etrics at http://127\.0\.0\.1:(\d+)/metrics"),
    "git": re.compile(rb"[Gg]it on git://127\.0\.0\.1:(\d+)/"),
}


@dataclass
class Datakit:
    """A ``datakit serve`` child process and the ports it announced."""

    ports: dict[str, int]
    proc: subprocess.Popen[bytes]
    said: list[bytes] = field(default_factory=list)  # its stderr, the last lines

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['9p']}"

    @property
    def git_url(self) -> str:
        return f"git://127.0.0.1:{self.ports['git']}/"

    def samples(self, name: str) -> dict[str, float]:
        """A metric's samples on the Prometheus page, by their labels."""
        url = f"http://127.0.0.1:{self.ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            text = page.read().decode()
        pattern = rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$"
        return {labels: float(v) for labels, v in re.findall(pattern, text, re.MULTILINE)}

    def metric(self, name: str) -> float:
        """The sum of a metric's samples."""
        return sum(self.samples(name).values())


@contextmanager
def datakit(*args: str) -> Iterator[Datakit]:
    """``datakit serve`` of this checkout on ports it picks itself (read
    from what it announces on stderr, as tests/operations/procs.py does)."""
    cmd = [sys.executable, "-m", "datakit", "serve", "--listen-9p", "tcp://127.0.0.1:0",
           "--listen-prometheus", "127.0.0.1:0", *args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    server = Datakit({}, proc)
    wanted = {"9p", "metrics"} | ({"git"} if "--listen-git" in args else set())
    announced = threading.Event()

    def drain() -> None:  # always read: a full stderr pipe would block the server
        assert proc.stderr is not None
        for line in proc.stderr:
            server.said[:] = [*server.said[-20:], line]
            for key, pattern in _ANNOUNCED.items():
                match = pattern.search(line)
                if match and key not in server.ports:
                    server.ports[key] = int(match.group(1))
            if wanted <= server.ports.keys():
                announced.set()
        announced.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not announced.wait(60) or not wanted <= server.ports.keys():
            said = b"".join(server.said).decode(errors="replace")
            raise RuntimeError(f"datakit serve did not start ({proc.poll()}): {said}")
        yield server
    finally:
        stop(proc)
        reader.join(10)


def load_from(server: Datakit, url: str) -> float:
    """Fetch ``url``'s master into the store and fast-forward master to it."""
    start = time.perf_counter()
    with _client().connect(server.address) as conn:
        head = conn.fetch(url, "master")
        conn.branch("master").fast_forward(head)
    return time.perf_counter() - start


class CountingRelay:
    """A TCP relay to a port that counts the bytes each way: what git
    daemon sends, in a run that is not timed."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.to_client = 0
        self.to_server = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                with self.lock:
                    if down:
                        self.to_client += len(data)
                    else:
                        self.to_server += len(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


# -- part 1: clone and fetch ---------------------------------------------------------


@dataclass
class Contender:
    name: str
    url: str
    server: Datakit | None  # None: git daemon
    protocols: list[int]  # the operations it runs: those in these protocols
    times: dict[str, list[float]] = field(default_factory=dict)
    # The server's CPU seconds in each run (git daemon: its one untimed run).
    cpu: dict[str, list[float]] = field(default_factory=dict)
    wire: dict[str, tuple[int, int]] = field(default_factory=dict)  # sent, received
    spoken: dict[int, int] = field(default_factory=dict)


@dataclass
class Operation:
    name: str
    protocol: int
    command: Callable[[str, Path], list[str]]  # (url, destination) -> git arguments
    prepare: Callable[[Path], None] | None = None  # untimed, before each run


def clone_command(version: int, depth: int | None) -> Callable[[str, Path], list[str]]:
    def command(url: str, dest: Path) -> list[str]:
        deep = ["--depth", str(depth)] if depth else []
        return ["-c", f"protocol.version={version}", "clone", "--bare", "-q", *deep, url, str(dest)]

    return command


def fetch_command(version: int) -> Callable[[str, Path], list[str]]:
    def command(url: str, dest: Path) -> list[str]:
        return ["--git-dir", str(dest), "-c", f"protocol.version={version}", "fetch", "-q", url,
                "master"]  # fmt: skip

    return command


def timed_git(args: list[str]) -> float:
    start = time.perf_counter()
    git(*args)
    return time.perf_counter() - start


def run_operation(op: Operation, who: Contender, dest: Path, url: str | None = None) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    if op.prepare is not None:
        op.prepare(dest)
    return timed_git(op.command(url or who.url, dest))


def wire_bytes(server: Datakit) -> tuple[int, int]:
    """Bytes the server has sent to and received from git clients so far."""
    return (
        int(server.metric("datakit_git_sent_bytes_total")),
        int(server.metric("datakit_git_received_bytes_total")),
    )


def measure(
    ops: list[Operation],
    contenders: list[Contender],
    rounds: int,
    work: Path,
    inetd: InetdGit | None,
) -> None:
    dest = work / "dest.git"
    for op in ops:
        runs = [who for who in contenders if op.protocol in who.protocols]
        for who in runs:
            who.times[op.name] = []
            who.cpu[op.name] = []
            if who.server is None:
                # Warm-ups: through the relay for git daemon's bytes, and
                # through git daemon --inetd for its CPU.
                relay = CountingRelay(int(who.url.split(":")[2].split("/")[0]))
                path = who.url.split("/", 3)[3]
                try:
                    run_operation(op, who, dest, f"git://127.0.0.1:{relay.port}/{path}")
                finally:
                    relay.close()
                who.wire[op.name] = (relay.to_client, relay.to_server)
                assert inetd is not None
                used = inetd.cpu
                run_operation(op, who, dest, f"git://127.0.0.1:{inetd.port}/{path}")
                deadline = time.perf_counter() + 10
                while inetd.cpu == used and time.perf_counter() < deadline:
                    time.sleep(0.01)  # until its process is waited for
                who.cpu[op.name].append(inetd.cpu - used)
        for r in range(rounds):
            for who in runs:
                if who.server is None:
                    who.times[op.name].append(run_operation(op, who, dest))
                    continue
                before = wire_bytes(who.server) if r == 0 else (0, 0)
                cpu = cpu_seconds(who.server.proc.pid)
                who.times[op.name].append(run_operation(op, who, dest))
                who.cpu[op.name].append(cpu_seconds(who.server.proc.pid) - cpu)
                if r == 0:
                    after = wire_bytes(who.server)
                    who.wire[op.name] = (after[0] - before[0], after[1] - before[1])
        print(f"  measured: {op.name}", file=sys.stderr)


def print_clone_table(ops: list[Operation], contenders: list[Contender], rounds: int) -> None:
    print(f"\nclone and fetch: best and median of {rounds} (ratio: ours/git daemon, >1 slower);"
          " cpu s: the server's CPU seconds, median (git daemon: one run, as --inetd)")  # fmt: skip
    print(f"  {'operation':<36} {'server':<16} {'best s':>8} {'median s':>9} {'best x':>7} "
          f"{'med x':>6} {'cpu s':>7} {'cpu x':>6} {'bytes sent':>11} "
          f"{'bytes recv':>10}")  # fmt: skip
    reference = contenders[0]
    for op in ops:
        ref = reference.times[op.name]
        ref_cpu = statistics.median(reference.cpu[op.name])
        for who in contenders:
            if op.name not in who.times:
                continue
            times = who.times[op.name]
            best, median = min(times), statistics.median(times)
            ratio_best = best / min(ref)
            ratio_median = median / statistics.median(ref)
            cpu = statistics.median(who.cpu[op.name])
            cpu_ratio = f"{cpu / ref_cpu:>5.1f}x" if ref_cpu else f"{'-':>6}"
            sent, got = who.wire.get(op.name, (0, 0))
            name = op.name
            if op.protocol == 2:
                name += f" (server: v{who.spoken.get(2, '?')})"
            print(f"  {name:<36} {who.name:<16} {best:>8.3f} {median:>9.3f} {ratio_best:>6.2f}x "
                  f"{ratio_median:>5.2f}x {cpu:>7.2f} {cpu_ratio} {sent:>11,} "
                  f"{got:>10,}")  # fmt: skip


def clone_part(
    args: argparse.Namespace, work: Path, stack: ExitStack
) -> tuple[Datakit | None, str]:
    """Part 1; returns the memory store's server (with the history) and the
    daemon's URL, for part 2."""
    served = work / "served"
    repo = served / "hist.git"
    start = time.perf_counter()
    build_history(repo, args.commits)
    print(f"  history: {args.commits} commits built in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)  # fmt: skip
    copy = work / "datakit-git.git"
    if "git" in args.stores:
        shutil.copytree(repo, copy)
    daemon_port = stack.enter_context(git_daemon(served))
    inetd = InetdGit(served)
    stack.callback(inetd.close)
    daemon_url = f"git://127.0.0.1:{daemon_port}/hist.git"
    every = list(args.protocols)
    contenders = [Contender("git daemon", daemon_url, None, every)]
    memory: Datakit | None = None
    if "memory" in args.stores:
        memory = stack.enter_context(datakit("--listen-git", "tcp://127.0.0.1:0"))
        took = load_from(memory, daemon_url)
        print(f"  memory store filled by a 9p fetch in {took:.1f} s", file=sys.stderr)
        contenders.append(Contender("datakit memory", memory.git_url, memory, every))
    if "git" in args.stores:
        on_disk = stack.enter_context(datakit("--listen-git", "tcp://127.0.0.1:0", "--git",
                                              str(copy)))  # fmt: skip
        # For reference: by default only the first protocol's rows (time).
        some = every if args.git_store_all else every[:1]
        contenders.append(Contender("datakit --git", on_disk.git_url, on_disk, some))
    expected = remote_master(daemon_url)
    for who in contenders:
        if remote_master(who.url) != expected:
            raise SystemExit(f"{who.name} serves master {remote_master(who.url)}, not {expected}")
        for version in args.protocols:
            who.spoken[version] = spoken_protocol(who.url, version)
    base = work / "base.git"
    git("clone", "--bare", "-q", daemon_url, str(base))

    ops: list[Operation] = []
    for version in args.protocols:
        ops.append(Operation(f"clone, v{version}", version, clone_command(version, None)))
    for version in args.protocols:
        ops.append(Operation(f"clone --depth 1, v{version}", version, clone_command(version, 1)))
    measure(ops, contenders, args.rounds, work, inetd)

    new = args.fetch_commits
    add_commits(repo, args.commits, new)
    for who in contenders:
        if who.server is not None:
            load_from(who.server, daemon_url)
    expected = remote_master(daemon_url)
    for who in contenders:
        if remote_master(who.url) != expected:
            raise SystemExit(f"{who.name}: master is not {expected} after the fetch")

    def from_base(dest: Path) -> None:
        shutil.copytree(base, dest)

    fetches = [
        Operation(f"fetch {new} new commits, v{v}", v, fetch_command(v), from_base)
        for v in args.protocols
    ]
    measure(fetches, contenders, args.rounds, work, inetd)
    print_clone_table(ops + fetches, contenders, args.rounds)
    return memory, daemon_url


# -- part 2: 9p commit latency during clones ----------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class CloneLoop:
    """``git clone --bare`` of a URL again and again in a thread, until stopped."""

    def __init__(self, url: str, work: Path) -> None:
        self.url = url
        self.dest = work / "loop.git"
        self.stopping = threading.Event()
        self.durations: list[float] = []
        self.busy = 0.0  # seconds a clone was running
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CloneLoop:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopping.is_set():
            shutil.rmtree(self.dest, ignore_errors=True)
            start = time.perf_counter()
            self.proc = subprocess.Popen(
                ["git", "clone", "--bare", "-q", self.url, str(self.dest)],
                env=GIT_ENV, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            status = self.proc.wait()
            elapsed = time.perf_counter() - start
            self.busy += elapsed
            if status == 0 and not self.stopping.is_set():
                self.durations.append(elapsed)

    def finished(self) -> bool:
        """Has a clone run from start to end?"""
        return bool(self.durations)

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
        self.thread.join(60)


def commit_latencies(
    address: str, first: int, count: int, seconds: float, done: Callable[[], bool] | None = None
) -> list[float]:
    """One-file commits on branch ``latency`` and each one's seconds: ``count``
    of them, or until ``done()`` (checked after each), at most ``seconds``."""
    out: list[float] = []
    with _client().connect(address) as conn:
        branch = conn.branch("latency")
        deadline = time.perf_counter() + seconds
        for i in range(first, first + count):
            start = time.perf_counter()
            with branch.transaction() as t:
                t.create_or_replace_file(f"f{i % 50}", b"latency %d\n" % i)
                t.commit(f"latency {i}")
            out.append(time.perf_counter() - start)
            if start > deadline or (done is not None and done()):
                break
    return out


def latency_part(args: argparse.Namespace, memory: Datakit, daemon_url: str, work: Path) -> None:
    """Quiet, then during clones from this server, then (the control: a
    machine as busy with clones, but none served by us) from git daemon."""
    commit_latencies(memory.address, 0, 20, 30)  # warm-up, and the branch exists
    loops = [
        ("no clone running", None),
        ("clones from datakit", memory.git_url),
        ("clones from git daemon", daemon_url),
    ]
    values: dict[str, list[float]] = {name: [] for name, _ in loops}
    took = dict.fromkeys(values, 0.0)
    clones: dict[str, list[float]] = {name: [] for name in values}
    count = max(1, args.latency_commits // args.latency_rounds)
    first = 100
    for _ in range(args.latency_rounds):  # interleaved: the machine's load drifts
        # Quiet: `count` commits. During our clones: until one whole clone
        # is done (its walk and its pack). From git daemon: as long.
        ours = 0.0
        for name, url in loops:
            with ExitStack() as running:
                start = time.perf_counter()
                if url is None:
                    seen = commit_latencies(memory.address, first, count, args.latency_seconds)
                else:
                    loop = running.enter_context(CloneLoop(url, work))
                    time.sleep(0.1)  # the clone has connected
                    seen = commit_latencies(
                        memory.address, first, 10**6, ours or args.latency_seconds,
                        loop.finished if not ours else None,
                    )  # fmt: skip
                elapsed = time.perf_counter() - start
                ours = ours or (elapsed if url is not None else 0.0)
            values[name] += seen
            took[name] += elapsed
            if url is not None:
                clones[name] += loop.durations
            first += len(seen) + 1
    quiet = values["no clone running"]
    phases: list[tuple[str, list[float], str]] = []
    for name, _ in loops:
        done = clones[name]
        mean = f", {statistics.mean(done):.2f} s each" if done else ""
        note = f"{took[name]:.1f} s" + (
            f", {len(done)} clones finished{mean}" if name != loops[0][0] else ""
        )
        phases.append((name, values[name], note))
    print(f"\n9p commit latency (client library, one-file commits to another branch), ms;"
          f" {args.commits}-commit clones in a loop meanwhile")  # fmt: skip
    print(f"  {'':<24} {'commits':>8} {'p50':>8} {'p99':>8} {'max':>8}  "
          f"{'p50 x':>6} {'p99 x':>6} {'max x':>6}  phase")  # fmt: skip
    for name, seen, note in phases:
        p50, p99, top = percentile(seen, 0.5), percentile(seen, 0.99), max(seen)
        ratios = (p50 / percentile(quiet, 0.5), p99 / percentile(quiet, 0.99), top / max(quiet))
        print(f"  {name:<24} {len(seen):>8} {1000 * p50:>8.2f} {1000 * p99:>8.2f} "
              f"{1000 * top:>8.2f}  {ratios[0]:>5.2f}x {ratios[1]:>5.2f}x {ratios[2]:>5.2f}x  "
              f"{note}")  # fmt: skip
    during, control = values[loops[1][0]], values[loops[2][0]]
    vs = [percentile(during, q) / percentile(control, q) for q in (0.5, 0.99)]
    print(f"  clones from datakit / clones from git daemon: p50 {vs[0]:.2f}x, p99 {vs[1]:.2f}x, "
          f"max {max(during) / max(control):.2f}x")  # fmt: skip


# -- part 3: replica lag -------------------------------------------------------------


def replica_part(
    args: argparse.Namespace, stack: ExitStack, replica_git: Path | None, work: Path
) -> None:
    """Part 3, with the replica on a memory store or on ``replica_git``."""
    client = _client()
    store = "memory" if replica_git is None else "--git"
    history = args.replica_history
    print(f"\nreplica lag: {args.rate:g} commits/s on the primary (memory store"
          f"{f', {history} commits of history first' if history else ''}) for {args.seconds:g} s;"
          f" the replica on a {store} store")  # fmt: skip
    primary = stack.enter_context(datakit("--listen-git", "tcp://127.0.0.1:0"))
    if history:
        source = work / "replica-source"
        if not source.exists():
            build_history(source / "h.git", history)
        port = stack.enter_context(git_daemon(source))
        load_from(primary, f"git://127.0.0.1:{port}/h.git")
    pconn = stack.enter_context(client.connect(primary.address))
    master = pconn.branch("master")
    with master.transaction() as t:
        t.create_file("seed", b"seed\n")
        t.commit("seed")
    seed = master.head().id
    mirror = ["--mirror", primary.git_url]
    if replica_git is not None:
        mirror += ["--git", str(replica_git)]
    if args.mirror_interval is not None:
        mirror += ["--mirror-interval", str(args.mirror_interval)]
    started = time.perf_counter()
    try:
        replica = stack.enter_context(datakit(*mirror))
    except RuntimeError as exc:
        print(f"  skipped: --mirror not available ({str(exc).splitlines()[0][:200]})")
        return
    rconn = stack.enter_context(client.connect(replica.address))
    # branch() opens a branch with a mkdir: on a replica that is refused
    # (EROFS) until the branch exists, so wait for it to be listed first.
    wait = 15 + history / 100  # a first copy of a long history takes a while
    deadline = time.perf_counter() + wait
    while "master" not in rconn.branches() and time.perf_counter() < deadline:
        time.sleep(0.05)
    followed: Any = None
    if "master" in rconn.branches():
        rmaster = rconn.branch("master")
        followed = rmaster.wait_for_head(
            lambda h: True if h is not None and h.id == seed else client.AGAIN,
            timeout=max(1.0, deadline - time.perf_counter()),
        )
    if followed is not True:
        print(f"  skipped: --mirror not available (the replica did not follow its primary in "
              f"{wait:g} s)")  # fmt: skip
        return
    print(f"  the replica had the primary's head {time.perf_counter() - started:.1f} s after "
          "it was started")  # fmt: skip

    seen: list[tuple[float, str]] = []
    cancel = threading.Event()

    def record(head: Any) -> Any:
        if head is not None:
            seen.append((time.perf_counter(), head.id))
        return client.AGAIN

    watcher = threading.Thread(
        target=lambda: rmaster.wait_for_head(record, cancel=cancel), daemon=True
    )
    watcher.start()
    time.sleep(0.5)  # the watch is open
    made: list[tuple[float, str]] = []
    total = int(args.rate * args.seconds)
    start = time.perf_counter()
    for i in range(total):
        pause = start + i / args.rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        with master.transaction() as t:
            t.create_or_replace_file(f"f{i % 50}", b"replica %d\n" % i)
            t.commit(f"replica {i}")
        done = time.perf_counter()
        made.append((done, master.head().id))
    took = time.perf_counter() - start
    final = made[-1][1]
    deadline = time.perf_counter() + 60 + history / 50
    while not (seen and seen[-1][1] == final) and time.perf_counter() < deadline:
        time.sleep(0.05)
    cancel.set()
    watcher.join(5)
    index = {sha: i for i, (_, sha) in enumerate(made)}
    lags: list[float] = []
    arrivals = [(t, index[sha]) for t, sha in seen if sha in index]
    j = 0
    for i, (committed, _) in enumerate(made):
        while j < len(arrivals) and arrivals[j][1] < i:
            j += 1
        if j == len(arrivals):
            break
        lags.append(arrivals[j][0] - committed)
    replica_head = rmaster.head()
    equal = replica_head is not None and replica_head.id == final
    print(f"  {total} commits in {took:.1f} s ({total / took:.1f}/s); the replica saw "
          f"{len(arrivals)} distinct heads; {len(lags)} of {total} commits arrived")  # fmt: skip
    if lags:
        print(f"  lag ms: min {1000 * min(lags):.0f}, median {1000 * statistics.median(lags):.0f}, "
              f"p99 {1000 * percentile(lags, 0.99):.0f}, max {1000 * max(lags):.0f}")  # fmt: skip
    print(f"  final head equal: {'yes' if equal else 'NO'} ({final[:12]})")
    served = {
        re.sub(r'.*service="([^"]*)".*', r"\1", labels): int(n)
        for labels, n in primary.samples("datakit_git_requests_total").items()
        if 'outcome="ok"' in labels and n
    }
    sent = int(primary.metric("datakit_git_sent_bytes_total"))
    print(f"  the primary served {served} git requests, {sent:,} bytes")


# -- main ----------------------------------------------------------------------------


def csv_of(kind: Callable[[str], Any], allowed: set[str] | None = None) -> Callable[[str], list]:
    def parse(text: str) -> list[Any]:
        items = [t for t in text.split(",") if t]
        if not items or (allowed is not None and not set(items) <= allowed):
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {sorted(allowed or [])}")
        return [kind(t) for t in items]

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=10_000, help="commits in the history")
    parser.add_argument("--rounds", type=int, default=3, help="best/median of N")
    parser.add_argument("--fetch-commits", type=int, default=10, help="new commits to fetch")
    parser.add_argument("--stores", type=csv_of(str, {"memory", "git"}), default=["memory", "git"],
                        help="datakit stores to clone from: memory,git")  # fmt: skip
    parser.add_argument("--protocols", type=csv_of(str, {"0", "2"}), default=["0", "2"])
    parser.add_argument("--git-store-all", action="store_true",
                        help="every protocol's rows for the --git store too (default: the "
                        "first of --protocols only)")  # fmt: skip
    parser.add_argument("--only", type=csv_of(str, {"clone", "latency", "replica"}),
                        default=["clone", "latency", "replica"])  # fmt: skip
    parser.add_argument("--latency-commits", type=int, default=300,
                        help="9p commits of the quiet latency phase")  # fmt: skip
    parser.add_argument("--latency-seconds", type=float, default=60,
                        help="at most this long per latency phase")  # fmt: skip
    parser.add_argument("--latency-rounds", type=int, default=1, help="phases interleaved")
    parser.add_argument("--rate", type=float, default=50, help="primary commits/s (replica)")
    parser.add_argument("--seconds", type=float, default=10, help="replica: seconds of commits")
    parser.add_argument("--replica-stores", type=csv_of(str, {"memory", "git"}),
                        default=["memory", "git"], help="replica stores: memory,git")  # fmt: skip
    parser.add_argument("--replica-history", type=int, default=0,
                        help="commits on the primary before the replica starts")  # fmt: skip
    parser.add_argument("--mirror-interval", type=float, default=None,
                        help="passed to the replica (default: its own)")  # fmt: skip
    args = parser.parse_args()
    args.protocols = [int(v) for v in args.protocols]
    counts = (args.commits, args.rounds, args.fetch_commits, args.latency_commits,
              args.latency_rounds)  # fmt: skip
    if min(counts) < 1:
        parser.error("--commits, --rounds, --fetch-commits, --latency-* must be positive")
    if args.replica_history < 0:
        parser.error("--replica-history must not be negative")
    if args.rate <= 0 or args.seconds <= 0 or args.latency_seconds <= 0:
        parser.error("--rate, --seconds and --latency-seconds must be positive")
    if "latency" in args.only and ("memory" not in args.stores or "clone" not in args.only):
        parser.error("the latency part needs --stores memory and the clone part")
    for tool in ("git",):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dk-git-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        memory, daemon_url = clone_part(args, work, stack) if "clone" in args.only else (None, "")
        if "latency" in args.only and memory is not None:
            latency_part(args, memory, daemon_url, work)
        if "replica" in args.only:
            for store in args.replica_stores:
                with ExitStack() as replica_stack:
                    git_dir = work / "replica.git" if store == "git" else None
                    replica_part(args, replica_stack, git_dir, work)
    print(f"\n(whole run {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
