#!/usr/bin/env python3
"""Shell work through the Linux kernel's 9p client: `datakit serve --git` against diod.

Issue 13, target 1: one VM boot (tests/kernel/vm9p.py, the kernel tests'
harness) mounts BOTH servers with the same options (trans=tcp,
version=9p2000.L, the kernel's defaults otherwise: cache=none):

* ``/db``: ``python -m datakit serve --git REPO`` on a fresh repository; the
  work happens in a transaction's ``rw`` (``/db/branch/master/transactions/
  bR/rw/rR``), "commit" is ``echo commit > .../ctl`` and the steps after it
  read the committed files under ``/db/branch/master/ro/rR``;
* ``/diod``: diod exporting a plain temporary directory (``/diod/rR``);
  "commit" there is ``sync`` (``--diod-commit fsync`` fsyncs every file and
  directory instead, which is what the datakit commit promises).

A guest shell script runs the workload (create N small files with ``echo``,
``ls -l``, ``cat`` them, append to each, ``find``, ``cp`` into a new
subdirectory, commit, drop the guest's caches, read every file back,
``ls -lR``, ``tar`` to the guest's tmpfs) step by step, alternating the two
servers at every step (which one goes first alternates by round), each
round on fresh names. Each step is timed in the guest with busybox ash's
``$EPOCHREALTIME`` (microseconds, no fork). The table shows the best of N
rounds per step (and the median), and ratio = diod time / datakit time
(> 1: datakit is faster). Overall = the sum of the steps.

Under TCG the guest's vCPUs want both of a 2-core host's cores, so the
servers' CPU time is taken from the guest: the script also prints each
server's CPU seconds over the run and the datakit server's CPU per 9p
request (the request count comes from its ``/metrics``, scraped from the
host before and after). That figure is much steadier than the step times on
a loaded host.

``--requests`` also scrapes the datakit server's Prometheus ``/metrics``
from the guest (busybox wget, outside the timed part) around every datakit
step and prints the 9p requests the kernel sent per step, by type, with the
server-side time they took.

Run from a checkout; ``--datakit-cwd DIR`` runs the server from another
checkout (``PYTHONPATH=DIR python -m datakit serve``). Needs qemu, diod and
the vm9p cache (``python tests/kernel/vm9p.py --prepare``). Not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "kernel"))

import vm9p  # noqa: E402  (the kernel tests' stdlib-only harness)

# The workload, in order. A step's prerequisites run (but are not reported)
# when --step leaves them out: every later step needs the files, the steps
# after the commit need the copy and the commit (same tree on both sides).
STEPS = ("create", "ls_l", "cat", "append", "find", "cp", "commit", "readback", "ls_lR", "tar")
NEEDS: dict[str, tuple[str, ...]] = {
    "create": (),
    "ls_l": ("create",),
    "cat": ("create",),
    "append": ("create",),
    "find": ("create",),
    "cp": ("create",),
    "commit": ("create", "cp"),
    "readback": ("create", "cp", "commit"),
    "ls_lR": ("create", "cp", "commit"),
    "tar": ("create", "cp", "commit"),
}
SIDES = ("dk", "diod")

# Guest side. $W: the working directory, $R: where the committed files are
# read, $T: the datakit transaction (empty for diod), $S: the side. Every
# step is a shell function; `run_step` times one with $EPOCHREALTIME.
GUEST_PRELUDE = r"""
NF=$BENCH_FILES
NUMS=$(seq 1 $NF)
DK=/db
DI=/diod
say() { echo "@$*"; }
fail() { say FAIL "$*"; exit 1; }

cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)
# clock resolution: the smallest non-zero step of $EPOCHREALTIME
prev=$EPOCHREALTIME; min=999999999; n=0
while [ $n -lt 2000 ]; do
  t=$EPOCHREALTIME
  if [ "$t" != "$prev" ]; then
    d=$(( ${t%.*}${t#*.} - ${prev%.*}${prev#*.} ))
    [ $d -lt $min ] && min=$d
  fi
  prev=$t; n=$((n+1))
done
say CLOCK "$cs" "$min"
grep ' 9p ' /proc/mounts | while read -r src dir _ opts _; do say MOUNT "$dir" "$opts"; done

mkdir $DK/branch/master 2>/dev/null
[ -d $DK/branch ] || fail "no /db/branch: is /db a datakit server?"
[ -d $DI ] || fail "no /diod mount"

side() {  # side dk|diod ROUND: set $S $W $R $T
  S=$1
  if [ $1 = dk ]; then
    T=$DK/branch/master/transactions/b$2; W=$T/rw/r$2; R=$DK/branch/master/ro/r$2
  else
    T=; W=$DI/branch/master/transactions/b$2/rw/r$2; R=$W  # the same depth
  fi
}

metrics() {  # metrics ROUND STEP PHASE: the datakit server's 9p counters
  [ -n "$BENCH_METRICS" ] && [ $S = dk ] || return 0
  wget -q -O /tmp/metrics "$BENCH_METRICS" || fail "wget $BENCH_METRICS failed"
  grep -E '^datakit_9p_(requests_total|request_duration_seconds_(sum|count)) ' /tmp/metrics \
    | sed "s/^/@M $1 $2 $3 /"
  grep -E '^datakit_9p_requests_total[{]' /tmp/metrics | sed "s/^/@M $1 $2 $3 /"
}

run_step() {  # run_step ROUND STEP: in $W, or in $R after the commit (untimed cd)
  case $2 in readback|ls_lR|tar) cd $R;; *) cd $W;; esac || fail "cd for $2 on $S"
  metrics $1 $2 pre
  t0=$EPOCHREALTIME
  st_$2
  rc=$?
  t1=$EPOCHREALTIME
  metrics $1 $2 post
  cd /
  [ $rc = 0 ] || fail "step $2 on $S round $1 exited $rc"
  say STEP $1 $S $2 $t0 $t1
}

# relative names, as in a shell that cd'ed to the directory: the path to it
# is not walked again for every file
st_create() { for i in $NUMS; do echo "file $i of the shell benchmark" > f$i || return 1; done; }
st_ls_l() { ls -l > /dev/null; }
st_cat() { cat f* > /dev/null; }
st_append() { for i in $NUMS; do echo "appended line $i" >> f$i || return 1; done; }
st_find() { find . > /dev/null; }
st_cp() { mkdir sub && cp f* sub/; }
st_commit() {
  if [ $S = dk ]; then echo commit > $T/ctl
  elif [ "$BENCH_DIOD_COMMIT" = fsync ]; then sync f* sub/f* sub .  # busybox: fsync each
  else sync
  fi
}
st_readback() { cat f* sub/f* > /dev/null; }
st_ls_lR() { ls -lR > /dev/null; }
st_tar() { tar cf /tmp/bench.tar . && rm /tmp/bench.tar; }

prepare() {  # untimed: the transaction and the working directory
  if [ $S = dk ]; then mkdir $T || fail "mkdir $T"; fi
  mkdir -p $W || fail "mkdir $W"
}

check() {  # untimed: both sides hold what the round wrote
  [ -f $R/f$NF ] || fail "round $1 on $S: $R/f$NF missing"
  head -n 1 $R/f$NF | grep -qx "file $NF of the shell benchmark" \
    || fail "round $1 on $S: $R/f$NF holds '$(head -c 80 $R/f$NF)'"
  if [ -d $R/sub ]; then
    n=$(ls $R/sub | wc -l); [ $n = $NF ] || fail "round $1 on $S: $n files in $R/sub"
  fi
}
"""


@dataclass
class Server:
    """A server process whose output goes to a log file (nothing to drain)."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: str | None = None
    port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all its threads) so far: on a
        2-core host the server's CPU is taken from the guest's vCPUs."""
        assert self.proc is not None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self, tail: int = 3000) -> str:
        assert self.proc is not None
        state = "running" if self.alive() else f"exited with status {self.proc.returncode}"
        text = self.output()[-tail:].rstrip() or "(no output)"
        return (
            f"--- {self.name} ({state}): {shlex.join(self.argv)}\n"
            f"--- {self.name} output (tail) ---\n{text}\n"
        )

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class BenchError(Exception):
    """A failure the user sees as one message (plus the servers' output)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_datakit(args: argparse.Namespace, work: Path) -> Server:
    """`python -m datakit serve --git REPO` on a fresh repository; its ports are
    read from what it announces (it binds port 0: no race for a free port)."""
    repo = work / "db.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    argv = [args.python, "-m", "datakit", "serve", "--git", str(repo)]
    argv += ["--listen-9p", "tcp://127.0.0.1:0"]
    argv += ["--listen-prometheus", "127.0.0.1:0"]  # the run's request count
    argv += shlex.split(args.datakit_args)
    env = dict(os.environ)
    env["PYTHONPATH"] = args.datakit_cwd + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    srv = Server("datakit", argv, work / "datakit.log", env=env, cwd=args.datakit_cwd)
    srv.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = srv.output()
        m9 = re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", text, re.I)
        mm = re.search(r"metrics at http://[\d.]+:(\d+)/metrics", text, re.I)
        if m9 and mm:
            srv.port = int(m9.group(1))
            srv.metrics_port = int(mm.group(1)) if mm else 0
            if accepts(srv.port):
                return srv
        if not srv.alive():
            break
        time.sleep(0.05)
    raise BenchError(
        "the datakit server did not announce 'listening on tcp://127.0.0.1:PORT'"
        + " and 'metrics at http://...'"
        + " within 60 s (do not pass -q in --datakit-args)\n"
        + srv.describe()
    )


def start_diod(work: Path) -> Server:
    """diod exporting a plain directory (readable by "nobody": the kernel's
    first attach), on a free port (retried if another process takes it)."""
    if not shutil.which("diod"):
        raise BenchError("diod not found: apt-get install diod")
    export = work / "diod-export"
    export.mkdir()
    for d in (work, export):
        d.chmod(0o755)
    for attempt in range(3):
        port = free_port()
        argv = ["diod", "-f", "-n", "-c", "/dev/null", "-L", "stderr"]
        argv += ["-l", f"127.0.0.1:{port}", "-e", str(export)]
        srv = Server("diod", argv, work / f"diod{attempt}.log", port=port)
        srv.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and srv.alive():
            if accepts(port):
                return srv
            time.sleep(0.05)
        srv.stop()
        if "in use" not in srv.output():
            break
    raise BenchError("diod did not start listening within 30 s\n" + srv.describe())


def requests_served(srv: Server) -> int:
    """All 9p requests the datakit server has answered (host-side scrape)."""
    url = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
    except OSError as e:
        raise BenchError(f"cannot read {url}: {e}") from e
    return int(
        sum(float(v) for v in re.findall(r"^datakit_9p_requests_total\{.*\} (\S+)$", text, re.M))
    )


def load_average() -> str:
    """The host's 1-minute load: the guest's vCPUs and both servers share the
    host with everything else, and a loaded host stretches every step."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def plan(selected: Sequence[str]) -> list[str]:
    """The steps to run: the selected ones and their prerequisites, in order."""
    want = set(selected)
    for s in selected:
        want.update(NEEDS[s])
    return [s for s in STEPS if s in want]


def guest_script(steps: Sequence[str], rounds: int) -> str:
    """Round r: prepare both sides, then each step on both sides in turn
    (datakit first in odd rounds, diod first in even ones), then check."""
    lines = [GUEST_PRELUDE]
    for r in range(1, rounds + 1):
        order = SIDES if r % 2 else SIDES[::-1]
        for s in order:
            lines.append(f"side {s} {r}; prepare")
        for step in steps:
            if step == "readback":  # both sides read from the server, not the page cache
                lines.append("sync; echo 3 > /proc/sys/vm/drop_caches")
            for s in order:
                lines.append(f"side {s} {r}; run_step {r} {step}")
        for s in order:
            lines.append(f"side {s} {r}; check {r}")
    lines.append("say DONE")
    return "\n".join(lines) + "\n"


@dataclass
class Results:
    """What the guest printed: step times and, with --requests, counters."""

    clock: str = ""
    times: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    # (round, step, phase) -> {metric line key: value}
    metrics: dict[tuple[int, str, str], dict[str, float]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    mounts: list[str] = field(default_factory=list)
    done: bool = False


def parse(stdout: str) -> Results:
    res = Results()
    for line in stdout.splitlines():
        if not line.startswith("@"):
            continue
        parts = line[1:].split()
        if parts[0] == "STEP" and len(parts) == 6:
            _, _rnd, side, step, t0, t1 = parts
            res.times[step, side].append((float(t1) - float(t0)) * 1000.0)
        elif parts[0] == "M" and len(parts) >= 6:
            rnd, step, phase = int(parts[1]), parts[2], parts[3]
            res.metrics[rnd, step, phase][parts[4]] = float(parts[5])
        elif parts[0] == "MOUNT" and len(parts) == 3:
            res.mounts.append(f"{parts[1]}: {parts[2]}")
        elif parts[0] == "CLOCK":
            res.clock = " ".join(parts[1:])
        elif parts[0] == "DONE":
            res.done = True
    return res


def fmt_ratio(dk: float, diod: float) -> str:
    return f"{diod / dk:.2f}" if dk > 0 else "-"


def table(res: Results, steps: Sequence[str]) -> str:
    head = (
        f"{'step':<10} {'datakit ms':>11} {'diod ms':>9} {'ratio':>6}"
        f"   {'median dk':>10} {'median diod':>11} {'ratio':>6}"
    )
    rows = [head, "-" * len(head)]
    tot = {"best_dk": 0.0, "best_diod": 0.0, "med_dk": 0.0, "med_diod": 0.0}
    for step in steps:
        dk, di = res.times[step, "dk"], res.times[step, "diod"]
        b_dk, b_di = min(dk), min(di)
        m_dk, m_di = statistics.median(dk), statistics.median(di)
        tot["best_dk"] += b_dk
        tot["best_diod"] += b_di
        tot["med_dk"] += m_dk
        tot["med_diod"] += m_di
        rows.append(
            f"{step:<10} {b_dk:>11.1f} {b_di:>9.1f} {fmt_ratio(b_dk, b_di):>6}"
            f"   {m_dk:>10.1f} {m_di:>11.1f} {fmt_ratio(m_dk, m_di):>6}"
        )
    rows.append("-" * len(head))
    rows.append(
        f"{'overall':<10} {tot['best_dk']:>11.1f} {tot['best_diod']:>9.1f}"
        f" {fmt_ratio(tot['best_dk'], tot['best_diod']):>6}"
        f"   {tot['med_dk']:>10.1f} {tot['med_diod']:>11.1f}"
        f" {fmt_ratio(tot['med_dk'], tot['med_diod']):>6}"
    )
    return "\n".join(rows)


_REQ = re.compile(r"datakit_9p_requests_total\{(.*)\}")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_table(res: Results, steps: Sequence[str], rounds: int, files: int) -> str:
    """Per step (round 1; later rounds flagged if they differ): requests by
    type, total, per file, and the server's own time for them."""
    out = [f"9p requests the kernel sent to datakit per step ({files} files; round 1):"]
    for step in steps:
        per_round: list[dict[str, int]] = []
        server_ms = 0.0
        for r in range(1, rounds + 1):
            pre, post = res.metrics.get((r, step, "pre")), res.metrics.get((r, step, "post"))
            if pre is None or post is None:
                continue
            counts: dict[str, int] = {}
            for key, value in post.items():
                m = _REQ.fullmatch(key)
                if not m:
                    continue
                n = int(value - pre.get(key, 0.0))
                if n:
                    labels = dict(_LABEL.findall(m.group(1)))
                    outcome = labels.get("outcome", "ok")
                    label = labels.get("type", "?") + ("" if outcome == "ok" else f"({outcome})")
                    counts[label] = counts.get(label, 0) + n
            per_round.append(counts)
            if r == 1:
                k = "datakit_9p_request_duration_seconds_sum"
                server_ms = (post.get(k, 0.0) - pre.get(k, 0.0)) * 1000.0
        if not per_round:
            out.append(f"  {step:<9} (no counters)")
            continue
        first = per_round[0]
        total = sum(first.values())
        kinds = " ".join(f"{k}={v}" for k, v in sorted(first.items(), key=lambda kv: -kv[1]))
        steady = "" if all(c == first for c in per_round) else "  (other rounds differ)"
        guest_ms = res.times[step, "dk"][0] if res.times[step, "dk"] else 0.0
        out.append(
            f"  {step:<9} {total:>6} requests ({total / files:.1f}/file), server "
            f"{server_ms:.1f} ms of {guest_ms:.1f} ms: {kinds}{steady}"
        )
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    steps = plan(args.step or STEPS)
    reported = [s for s in steps if not args.step or s in args.step]
    try:
        info = vm9p.prepare_environment()
    except vm9p.HarnessError as e:
        raise BenchError(
            f"the VM cannot be prepared: {e}\n(python tests/kernel/vm9p.py --prepare)"
        ) from e
    work = Path(tempfile.mkdtemp(prefix="kernel-shell-bench-"))
    servers: list[Server] = []
    try:
        dk = start_datakit(args, work)
        servers.append(dk)
        diod = start_diod(work)
        servers.append(diod)
        env = {"BENCH_FILES": str(args.files), "BENCH_DIOD_COMMIT": args.diod_commit}
        if args.requests:
            env["BENCH_METRICS"] = f"http://10.0.2.2:{dk.metrics_port}/metrics"
        print(
            f"kernel {info.get('kernel_version')}; datakit from {args.datakit_cwd} "
            f"({shlex.join(dk.argv[1:])}); diod {diod.argv[-1]}; {args.files} files, "
            f"{args.rounds} rounds, mount opts trans=tcp,version=9p2000.L"
            + (f",{args.opts}" if args.opts else ""),
            flush=True,
        )
        extra = f",{args.opts}" if args.opts else ""
        load_before = load_average()
        dk_cpu0, diod_cpu0 = dk.cpu_seconds(), diod.cpu_seconds()
        dk_requests0 = requests_served(dk)
        t0 = time.monotonic()
        result = vm9p.run_guest_script(
            guest_script(steps, args.rounds),
            port=dk.port,
            version="9p2000.L",
            opts=args.opts,
            timeout=args.timeout,
            env=env,
            extra_args=[
                "--mount2",
                f"{diod.port}:/diod:aname={diod.argv[-1]}{extra}",
                *shlex.split(args.vm9p_args),
            ],
        )
        wall = time.monotonic() - t0
        res = parse(result.stdout)
        dead = [s for s in servers if not s.alive()]
        if not result.ok or not res.done or dead:
            fails = [ln for ln in result.stdout.splitlines() if ln.startswith("@FAIL")]
            why = (
                fails[-1][1:]
                if fails
                else f"vm9p exit {result.returncode} ({result.status.get('result')})"
            )
            if dead:
                why += "; server died: " + ", ".join(s.name for s in dead)
            raise BenchError(
                f"the guest run failed: {why}\n"
                f"--- guest stderr / harness (tail) ---\n{result.stderr[-3000:]}\n"
                f"--- guest stdout (tail) ---\n{result.stdout[-1500:]}"
            )
        clock, _, resolution = res.clock.rpartition(" ")
        ev = result.status.get("events", {})
        boot = ev.get("START", {}).get("host_s", "?")
        print(
            f"guest clock: $EPOCHREALTIME, clocksource {clock or '?'}, smallest step "
            f"{resolution} us; VM {wall:.0f} s (boot + mounts {boot} s)\n"
        )
        dk_cpu, diod_cpu = dk.cpu_seconds() - dk_cpu0, diod.cpu_seconds() - diod_cpu0
        n = max(1, requests_served(dk) - dk_requests0)
        print("guest mounts (/proc/mounts): " + "; ".join(res.mounts))
        print(
            f"host load average before/after: {load_before} / {load_average()}\n"
            f"server CPU in the run: datakit {dk_cpu:.2f} s, diod {diod_cpu:.2f} s "
            f"(ratio {diod_cpu / dk_cpu if dk_cpu else 0:.2f}); datakit answered {n} "
            f"9p requests: {dk_cpu / n * 1e6:.0f} us CPU per request, diod "
            f"{diod_cpu / n * 1e6:.0f} us for about as many\n"
        )
        print(table(res, reported))
        print("ratio = diod ms / datakit ms (> 1: datakit faster); best and median of rounds")
        if args.requests:
            print()
            print(request_table(res, reported, args.rounds, args.files))
            print("(--requests: timings include nothing of the scrapes, but the server ran them)")
        if args.verbose:
            for s in servers:
                print(s.describe(), file=sys.stderr)
        return 0
    except BenchError as e:
        print(f"kernel_shell_bench: {e}", file=sys.stderr)
        for s in servers:
            print(s.describe(), file=sys.stderr)
        return 1
    finally:
        for s in servers:
            s.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds, best of (default 3)")
    ap.add_argument(
        "--files",
        type=int,
        default=100,
        help="small files per round (default 100; the issue's workload is 300)",
    )
    ap.add_argument(
        "--step",
        action="append",
        choices=STEPS,
        help="report only this step (repeatable); its prerequisites still run",
    )
    ap.add_argument(
        "--datakit-cwd",
        default=str(ROOT),
        help="checkout to run the server from: PYTHONPATH=DIR python -m datakit serve "
        "(default: this script's checkout)",
    )
    ap.add_argument(
        "--datakit-args", default="", help="extra `datakit serve` arguments (one string)"
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter for the server")
    ap.add_argument(
        "--diod-commit",
        choices=("sync", "fsync"),
        default="sync",
        help="diod's 'commit' step: sync (default) or fsync of every file and directory",
    )
    ap.add_argument(
        "--msize",
        type=int,
        default=65536,
        help="msize for both mounts (default 65536: diod's largest; the kernel's "
        "default, 128 KiB, would give datakit a bigger msize than diod)",
    )
    ap.add_argument("--opts", default="", help="extra mount options for both mounts")
    ap.add_argument(
        "--requests",
        action="store_true",
        help="print the 9p requests per step (scraped from the datakit server's /metrics)",
    )
    ap.add_argument(
        "--vm9p-args", default="", help="extra vm9p.py arguments (one string), e.g. '--smp 1'"
    )
    ap.add_argument("--timeout", type=float, default=0, help="VM time limit (default: by rounds)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, repo)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the servers' logs")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.files < 1:
        ap.error("--rounds and --files must be at least 1")
    if not (Path(args.datakit_cwd) / "datakit" / "__init__.py").is_file():
        ap.error(f"--datakit-cwd {args.datakit_cwd}: no datakit/__init__.py there")
    args.datakit_cwd = str(Path(args.datakit_cwd).resolve())
    args.opts = f"msize={args.msize}" + (f",{args.opts}" if args.opts else "")
    if not args.timeout:
        # a loaded 2-core host needed ~0.35 s per file and round for both sides
        args.timeout = 120 + 1.2 * args.rounds * args.files
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
