"""Issue 11's "done when", tried as a new user would, following only docs/ci.md.

The walk-through "From nothing to a green dashboard" is run command by
command: `datakit serve --git`, a repository made with `git` whose master
passes and whose branch `broken` fails, `datakit bridge local` and
`datakit ci`, each long-running one as its own process. The commands are the
doc's, word for word (``test_the_walkthrough_is_the_docs`` checks that the
doc still has them); only paths and ports are swapped for the test's own
(tmp_path, free ports, and the 9p address the doc leaves at its default).

Then, as the doc says a user sees it:
  * the dashboard `/` over HTTP has a green tile for master and a red one
    for broken;
  * clicking broken, then the check job, leads to the saved log, which
    holds the job's output; that page is rendered once in headless Chromium
    and the screenshot (a test artefact under tmp_path) is checked;
  * in a VM, the database mounted with `datakit mount` through the Linux
    kernel's 9p client, the doc's `cat` lines print the statuses, the
    result branches, the newest log and the history's JSON.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from kernelsupport import ServerProcess, assert_guest_ok, free_port

from tests.ci.test_web_chromium import count_colours, decode_png
from tests.gitrepo import GIT_ENV

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ci.md"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1200, 800

# The walk-through, word for word as docs/ci.md has it.
SERVE = "datakit serve --git ~/datakit-db --listen-prometheus 127.0.0.1:9090 &"
MAKE_REPO = """\
git init -q -b master /tmp/p && cd /tmp/p
printf 'echo checking; test -f README\\n' > check.sh
echo hello > README && git add . && git commit -qm "a passing master"
git checkout -qb broken && git rm -q README && git commit -qm "this breaks the check"
git checkout -q master && cd -
"""
BRIDGE = "datakit bridge local me/p:/tmp/p &"
CONFIG = """\
cat > ci.toml <<'EOF'
[[project]]
repo = "me/p"
source = "/tmp/p"
dashboards = ["master", "broken"]

[[project.job]]
name = "check"
run = "sh check.sh"
timeout = 60
EOF
head -c 24 /dev/urandom | base64 > ci-token       # the admin password for rebuilds
"""
CI = (
    "datakit ci --config ci.toml --workdir /tmp/ci-work --listen 127.0.0.1:8080"
    " --token-file ci-token &"
)
MOUNT = "datakit mount 127.0.0.1 /db"
BROKEN_SHA = "sha=$(git -C /tmp/p rev-parse broken)"
BROKEN_CATS = [
    "cat /db/branch/github-metadata/ro/me/p/commit/$sha/status/ci/datakit/check/state"
    "        # failure",
    "cat /db/branch/github-metadata/ro/me/p/commit/$sha/status/ci/datakit/check/description"
    "  # check failed: exit 1",
    "ls /db/branch/ | grep shell-of-check"
    "                                                    # the result branches",
]
MASTER_SHA = "sha=$(git -C /tmp/p rev-parse master)"
MASTER_CATS = [
    "cat /db/branch/shell-of-check-*-on-$sha/ro/log",
    "cat /db/branch/status-me-p-ref-heads-master/ro/job/check/output"
    '     # {"result":{"status":"success",...',
]
# Not in the doc for master, but the same line as for broken: master's status.
STATE_OF_SHA = BROKEN_CATS[0].split("#")[0].rstrip()


def test_the_walkthrough_is_the_docs() -> None:
    """Every command the walk-through test runs is in docs/ci.md as written."""
    doc = DOC.read_text()
    for text in [
        SERVE,
        MAKE_REPO,
        BRIDGE,
        CONFIG,
        CI,
        f"`{MOUNT}`",
        BROKEN_SHA,
        MASTER_SHA,
        *BROKEN_CATS,
        *MASTER_CATS,
    ]:
        assert text in doc, f"docs/ci.md no longer says:\n{text}"


class Walk:
    """The walk-through's paths and ports swapped for the test's own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.prometheus, self.web = free_port(), free_port()
        swaps = {
            "/tmp/p": str(tmp / "p"),
            "/tmp/ci-work": str(tmp / "ci-work"),
            "~/datakit-db": str(tmp / "datakit-db"),
            "127.0.0.1:9090": f"127.0.0.1:{self.prometheus}",
            "127.0.0.1:8080": f"127.0.0.1:{self.web}",
        }
        pattern = re.compile("|".join(re.escape(k) for k in swaps))
        self.adapt: Callable[[str], str] = lambda text: pattern.sub(
            lambda m: swaps[m.group(0)], text
        )
        self.env = {
            **os.environ,
            **{k: v for k, v in GIT_ENV.items() if k.startswith("GIT_")},
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }

    def argv(self, line: str, *extra: str) -> list[str]:
        """A doc command line as an argv: `datakit` is this checkout's, the
        trailing `&` is the Popen; ``extra`` follows the subcommand."""
        words = shlex.split(self.adapt(line), comments=True)
        assert words[0] == "datakit" and words[-1] == "&", words
        sub = 3 if words[1] == "bridge" else 2
        return [sys.executable, "-m", "datakit", *words[1:sub], *extra, *words[sub:-1]]

    def shell(self, script: str) -> str:
        """A doc shell block, run with sh in the walk's directory."""
        done = subprocess.run(
            ["sh", "-e", "-c", self.adapt(script)],
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, argv: list[str], name: str, port: int) -> ServerProcess:
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=self.tmp,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return ServerProcess(argv, port, proc, log)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


SAVED_LOG = re.compile(r'href="(/log/saved/shell-of-check-[0-9a-f]+-on-([0-9a-f]{40})/[^"]+)"')
TILE = re.compile(r'class="tile (\w+)" href="/me/p/ref/heads/([^"]+)"')


def wait_for_tiles(base: str, procs: list[ServerProcess], timeout: float) -> str:
    """The dashboard's HTML once master's tile is green and broken's red."""
    deadline = time.monotonic() + timeout
    html = ""
    while time.monotonic() < deadline:
        for p in procs:
            assert p.alive(), "\n".join(q.describe() for q in procs)
        try:
            status, html = http_get(base + "/")
        except OSError:  # the web UI is not listening yet
            time.sleep(0.5)
            continue
        tiles = {branch: state for state, branch in TILE.findall(html)}
        if status == 200 and tiles == {"master": "success", "broken": "failure"}:
            return html
        time.sleep(0.5)
    raise AssertionError(
        f"the dashboard never showed master green and broken red:\n{html[-3000:]}\n"
        + "\n".join(p.describe() for p in procs)
    )


def guest_sections(stdout: str) -> dict[str, str]:
    """The guest's output split at its `--- NAME` marker lines."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("--- "):
            current = out.setdefault(line[4:], [])
        else:
            current.append(line)
    return {k: "\n".join(v) for k, v in out.items()}


@pytest.mark.timeout(900)
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_ci_walkthrough_as_a_new_user(vm, ninep_server, tmp_path: Path) -> None:
    walk = Walk(tmp_path)
    started = time.monotonic()
    # 1. The database, on disk with metrics; its 9p address a free port.
    srv = ninep_server(
        lambda port: walk.argv(SERVE, "--listen-9p", f"tcp://127.0.0.1:{port}"),
        cwd=tmp_path,
        env=walk.env,
    )
    store = f"tcp:127.0.0.1:{srv.port}"
    # 2. The project: master passes, broken fails.
    walk.shell(MAKE_REPO)
    broken = walk.shell(BROKEN_SHA + '\necho "$sha"').strip()
    master = walk.shell(MASTER_SHA + '\necho "$sha"').strip()
    assert re.fullmatch("[0-9a-f]{40}", broken) and re.fullmatch("[0-9a-f]{40}", master)
    # 3. The local bridge, 4. the CI: both pointed at the database's port.
    bridge = walk.start(walk.argv(BRIDGE, "--metadata-store", store), "bridge", srv.port)
    walk.shell(CONFIG)
    ci = walk.start(walk.argv(CI, "--metadata-store", store), "ci", walk.web)
    procs = [srv, bridge, ci]
    try:
        base = f"http://127.0.0.1:{walk.web}"
        # "Open http://127.0.0.1:8080/: the dashboard shows master green
        # and broken red."
        dashboard = wait_for_tiles(base, procs, timeout=300)
        green_at = time.monotonic() - started
        assert dashboard.count('class="tile ') == 2, dashboard
        assert 'title="check failed: exit 1">check<' in dashboard, dashboard

        # "Click broken, then the check job: its log says why."
        status, target = http_get(base + "/me/p/ref/heads/broken")
        assert status == 200, target
        assert 'href="/me/p/ref/heads/broken?test=check"' in target, target
        status, job = http_get(base + "/me/p/ref/heads/broken?test=check")
        assert status == 200, job
        links = re.findall(SAVED_LOG, job)
        assert [sha for _, sha in links] == [broken], job
        log_url = base + links[0][0]
        status, log_page = http_get(log_url)
        assert status == 200, log_page
        assert "checking" in log_page, log_page
        assert "check failed: exit 1" in job, job

        # The saved log in a real browser.
        shot = tmp_path / "broken-log.png"
        assert CHROMIUM is not None
        rendered = subprocess.run(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                f"--screenshot={shot}",
                f"--window-size={WIDTH},{HEIGHT}",
                log_url,
            ],
            capture_output=True,
            timeout=180,
            check=False,
        )
        assert shot.exists(), rendered.stderr.decode(errors="replace")[-2000:]
        print(f"screenshot: {shot}")
        width, height, rows, bpp = decode_png(shot.read_bytes())
        assert (width, height) == (WIDTH, HEIGHT)
        counts: dict[bytes, int] = {}
        for row in rows:
            for x in range(0, len(row), bpp):
                px = row[x : x + 3]
                counts[px] = counts.get(px, 0) + 1
        background = max(counts.values())
        # A page with text and a header, not a blank or single-colour image.
        assert len(counts) > 20, len(counts)
        assert WIDTH * HEIGHT - background > 5000, (background, len(counts))
        # The red FAILURE badge and the log's dark block, as on the page.
        _green, red = count_colours(rows, bpp)
        dark = sum(n for px, n in counts.items() if max(px) < 40)
        assert red > 300 and dark > 20000, (red, dark)

        # The same facts from a shell in a VM, mounted as the doc says.
        # `datakit mount 127.0.0.1 /db` runs on the host (the guest has no
        # Python) with --dry-run; the guest runs the mount command it prints,
        # with the guest's name for the host and the server's port.
        words = shlex.split(MOUNT)
        assert words == ["datakit", "mount", "127.0.0.1", "/db"], words
        helper = ["mount", "--dry-run", "-p", str(srv.port), "GUESTHOST", "/db"]
        mount = subprocess.run(
            [sys.executable, "-m", "datakit", *helper],
            env=walk.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        guest_mount = shlex.join(shlex.split(mount)).replace("GUESTHOST", '"$VM9P_HOST"')
        lines = ["set -e", "cd /", "umount /db 2>/dev/null || true", "mkdir -p /db", guest_mount]
        lines += [f"sha={broken}"]
        lines += [f"echo '--- broken {i}'\n{cat}" for i, cat in enumerate(BROKEN_CATS)]
        lines += [f"sha={master}", f"echo '--- master state'\n{STATE_OF_SHA}"]
        lines += [f"echo '--- master {i}'\n{cat}" for i, cat in enumerate(MASTER_CATS)]
        res = vm.run("\n".join(lines) + "\n", port=srv.port, no_mount=True, timeout=300)
        assert_guest_ok(res, srv)
        out = guest_sections(res.stdout)
        assert out.get("broken 0") == "failure", res.describe()
        assert out.get("broken 1") == "check failed: exit 1", res.describe()
        results = out.get("broken 2", "").split()
        assert len(results) == 2, res.describe()
        assert {r.rsplit("-on-", 1)[1] for r in results} == {broken, master}, results
        assert out.get("master state") == "success", res.describe()
        assert "checking" in out.get("master 0", ""), res.describe()
        output = json.loads(out.get("master 1", ""))
        assert output["result"]["status"] == "success", output
        print(f"dashboard green and red after {green_at:.1f} s (from `datakit serve`)")
        for p in procs:
            assert p.alive(), p.describe()
    finally:
        codes = {p.argv[3]: p.stop(timeout=30) for p in (ci, bridge)}
    assert codes == {"ci": 0, "bridge": 0}, "\n".join(p.describe() for p in (ci, bridge))
    for p in (ci, bridge):
        assert "Traceback" not in p.output(), p.describe()
