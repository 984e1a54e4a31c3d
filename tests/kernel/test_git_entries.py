"""Issue #8, points 3 and 4, through the Linux kernel 9p client.

The VM mounts `datakit serve --git REPO`, where git itself wrote a file
whose name is not UTF-8, a symlink whose target is not UTF-8 and a
submodule (gitlink); scripts/git_entries.sh lists, stats, reads and
readlinks them with busybox, writes new such names, commits, and removes
the submodule. The host then checks the exact bytes with git.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kernelsupport import assert_guest_ok

from tests.gitrepo import RAW_NAME, SUB, git, git_bytes, git_written_repo

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("dialect", ["9p2000", "9p2000.u", "9p2000.L"])
def test_git_entries_through_the_kernel(vm, datakit_server, tmp_path: Path, dialect: str) -> None:
    repo = tmp_path / "db.git"
    git_written_repo(repo)
    srv = datakit_server("--git", str(repo))
    res = vm.run_file(
        "git_entries.sh", port=srv.port, version=dialect, env={"DIALECT": dialect, "SUB": SUB}
    )
    assert_guest_ok(res, srv)
    assert "git_entries: OK" in res.stdout
    first = next(
        line.split("=", 1)[1] for line in res.stdout.splitlines() if line.startswith("FIRST=")
    )
    listing = git_bytes(repo, "ls-tree", "-z", first).split(b"\0")
    assert b"160000 commit " + SUB.encode() + b"\tsub" in listing  # kept, same sha
    names = {entry.split(b"\t", 1)[1] for entry in listing if entry}
    assert {RAW_NAME, b"k\xe9\xff", b"badlink", b"plain"} <= names
    if dialect != "9p2000":
        link = git(repo, "rev-parse", first + ":l2")
        assert git_bytes(repo, "cat-file", "blob", link) == b"\xfft"
    assert b"\tsub\0" not in git_bytes(repo, "ls-tree", "-z", "master")
    git(repo, "fsck", "--strict")
