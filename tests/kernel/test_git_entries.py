"""Issue #8, points 3 and 4, through the Linux kernel 9p client.

The VM mounts `datakit serve --git REPO`, where git itself wrote a file
whose name is not UTF-8, a symlink whose target is not UTF-8 and a
submodule (gitlink); scripts/git_entries.sh lists, stats, reads and
readlinks them with busybox, writes new such names, commits, and removes
the submodule. The host then checks the exact bytes with git.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kernelsupport import assert_guest_ok

pytestmark = pytest.mark.kernel

SUB = "0123456789abcdef0123456789abcdef01234567"


def git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    env = {
        "GIT_AUTHOR_NAME": "up",
        "GIT_AUTHOR_EMAIL": "up@x",
        "GIT_COMMITTER_NAME": "up",
        "GIT_COMMITTER_EMAIL": "up@x",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args],
        input=input,
        check=True,
        capture_output=True,
        env=env,
    ).stdout


def _make_repo(repo: Path) -> None:
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    hello = git(repo, "hash-object", "-w", "--stdin", input=b"hello\n").strip()
    target = git(repo, "hash-object", "-w", "--stdin", input=b"caf\xe9/\xff").strip()
    lines = [
        b"100644 blob " + hello + b"\t\xff\xfe-latin1",
        b"120000 blob " + target + b"\tbadlink",
        b"160000 commit " + SUB.encode() + b"\tsub",
        b"100644 blob " + hello + b"\tplain",
    ]
    tree = git(repo, "mktree", "-z", input=b"\0".join(lines) + b"\0").strip().decode()
    commit = git(repo, "commit-tree", tree, "-m", "by git").strip().decode()
    git(repo, "update-ref", "refs/heads/master", commit)


@pytest.mark.parametrize("dialect", ["9p2000", "9p2000.u", "9p2000.L"])
def test_git_entries_through_the_kernel(vm, datakit_server, tmp_path: Path, dialect: str) -> None:
    repo = tmp_path / "db.git"
    _make_repo(repo)
    srv = datakit_server("--git", str(repo))
    res = vm.run_file(
        "git_entries.sh", port=srv.port, version=dialect, env={"DIALECT": dialect, "SUB": SUB}
    )
    assert_guest_ok(res, srv)
    assert "git_entries: OK" in res.stdout
    first = next(
        line.split("=", 1)[1] for line in res.stdout.splitlines() if line.startswith("FIRST=")
    )
    listing = git(repo, "ls-tree", "-z", first).split(b"\0")
    assert b"160000 commit " + SUB.encode() + b"\tsub" in listing  # kept, same sha
    names = {entry.split(b"\t", 1)[1] for entry in listing if entry}
    assert {b"\xff\xfe-latin1", b"k\xe9\xff", b"badlink", b"plain"} <= names
    if dialect != "9p2000":
        link = git(repo, "rev-parse", first + ":l2").strip().decode()
        assert git(repo, "cat-file", "blob", link) == b"\xfft"
    assert b"\tsub\0" not in git(repo, "ls-tree", "-z", "master")
    git(repo, "fsck", "--strict")
