"""Issue 8 re-checked from a shell on the Linux kernel's default 9p mount
(9P2000.L): names of 255 bytes, with a newline, a tab or bytes that are not
UTF-8 are kept; a 256-byte name, a `.gitmodules` symlink, writes to a
submodule and absurd sizes fail with ENAMETOOLONG, EINVAL, EROFS and EFBIG;
the mount then still writes and commits, and git accepts the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernelsupport import assert_guest_ok

from tests.gitrepo import SUB, git, git_bytes, git_written_repo

pytestmark = pytest.mark.kernel


def test_shell_errors(vm, datakit_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "db.git"
    git_written_repo(repo)
    srv = datakit_server("--git", str(repo))
    res = vm.run_file("shell_errors.sh", port=srv.port, version=None, env={"SUB": SUB})
    assert_guest_ok(res, srv)
    assert "shell_errors: OK" in res.stdout
    assert srv.alive(), srv.describe()
    git(repo, "fsck", "--strict")
    listing = git_bytes(repo, "ls-tree", "-r", "-z", "master").split(b"\0")
    assert b"160000 commit " + SUB.encode() + b"\tsub" in listing
    names = {entry.split(b"\t", 1)[1] for entry in listing if entry}
    assert {b"0" * 255, b"a\nb", b"a\tb", b"d\xe9/\xff", b"x"} <= names
