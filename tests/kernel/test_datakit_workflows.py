"""Issue 3: shell workflows on a real DataKit tree through the Linux kernel 9p client.

For each dialect the VM mounts `datakit serve --git REPO` and runs
scripts/datakit_workflows.sh (branches, a transaction with nested
directories, an executable and a symlink, head.live and tree.live readers,
a merge conflict resolved by hand, snapshots, trees, mv of a branch, a fetch
from git daemon).  The host then checks the repository with git itself.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernelsupport import assert_guest_ok, free_port

pytestmark = pytest.mark.kernel

GUEST_HOST = "10.0.2.2"  # the host's loopback as seen from the VM (slirp)


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        "GIT_AUTHOR_NAME": "up",
        "GIT_AUTHOR_EMAIL": "up@x",
        "GIT_COMMITTER_NAME": "up",
        "GIT_COMMITTER_EMAIL": "up@x",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[str]:
    base = tmp_path / "served"
    work = base / "upstream"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "master", str(work))
    (work / "upstream.txt").write_text("from git daemon")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "upstream", cwd=work)
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"git://127.0.0.1:{port}/upstream"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("dialect", ["9p2000", "9p2000.u", "9p2000.L"])
def test_shell_workflows(vm, datakit_server, tmp_path: Path, git_daemon: str, dialect: str) -> None:
    repo = tmp_path / "db"
    mport = free_port()
    srv = datakit_server("--git", str(repo), "--listen-prometheus", f"127.0.0.1:{mport}")
    res = vm.run_file(
        "datakit_workflows.sh",
        port=srv.port,
        version=dialect,
        timeout=300,
        env={"DIALECT": dialect, "GIT_URL": git_daemon, "METRICS": f"{GUEST_HOST}:{mport}"},
    )
    assert_guest_ok(res, srv)
    assert "datakit_workflows: OK" in res.stdout
    master = next(
        line.split("=", 1)[1] for line in res.stdout.splitlines() if line.startswith("MASTER=")
    )

    # The on-disk repository is an ordinary, valid Git repository.
    git(
        "--git-dir",
        str(repo / ".git") if (repo / ".git").exists() else str(repo),
        "fsck",
        "--strict",
    )
    gitdir = str(repo / ".git") if (repo / ".git").exists() else str(repo)
    assert git("--git-dir", gitdir, "rev-parse", "master") == master
    log = git("--git-dir", gitdir, "log", "--format=%s", "master").splitlines()
    assert log[-1] == "First commit" and len(log) == 4  # first, second, feature edit, merge
    assert git("--git-dir", gitdir, "show", "master:src/Makefile") == "all: feature"
    tree = git("--git-dir", gitdir, "ls-tree", "-r", "master")
    assert "100755 blob" in tree and "run.sh" in tree
    if dialect != "9p2000":
        assert "120000 blob" in tree and "\tlink" in tree
    assert "empty-dir" not in tree
    assert len(git("--git-dir", gitdir, "ls-tree", "master:many").splitlines()) == 100
    blob = git("--git-dir", gitdir, "rev-parse", "master:many/0")
    assert not Path(gitdir, "objects", blob[:2], blob[2:]).exists()  # packed, not loose
    branches = git("--git-dir", gitdir, "for-each-ref", "--format=%(refname:short)", "refs/heads")
    assert set(branches.split()) == {"master", "renamed", "fetched"}
