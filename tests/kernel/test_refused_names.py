"""Issue 8, point 1, through the Linux kernel 9p client: in a transaction,
`mkdir`, `touch`, `mv` and `ln -s` to `.git`, `.GIT`, `git~1` and friends
fail with EINVAL and leave nothing behind, the transaction then commits, and
the repository passes `git fsck --strict`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kernelsupport import assert_guest_ok

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("dialect", ["9p2000.u", "9p2000.L"])
def test_refused_names(vm, datakit_server, tmp_path: Path, dialect: str) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "db.git"
    srv = datakit_server("--git", str(repo))
    res = vm.run_file("refused_names.sh", port=srv.port, version=dialect, timeout=240)
    assert_guest_ok(res, srv)
    assert "refused_names: OK" in res.stdout
    subprocess.run(
        ["git", "--git-dir", str(repo), "fsck", "--strict", "--no-dangling"],
        check=True,
        capture_output=True,
    )
    files = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", "master"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert files == ["d/good", "f", "link"]
