"""A full disk fails the commit with ENOSPC and loses nothing.

The repository lives on a 2 MiB tmpfs (mounting one needs root, as the
kernel-client tests do); a commit of 4 MiB of incompressible data cannot fit.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.client.ninep_client import Client, RemoteError
from tests.serverthread import running_server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:  # root in a container without CAP_SYS_ADMIN
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_commit_that_does_not_fit_fails_cleanly(tmp_path: Path, small_disk: Path) -> None:
    repo = small_disk / "db.git"
    with running_server(tmp_path, git=str(repo)) as address, Client.connect(address) as c:
        c.mkdir("branch/master")
        c.mkdir("branch/master/transactions/a")
        c.create("branch/master/transactions/a/rw/small", b"fits\n")
        c.write("branch/master/transactions/a/ctl", b"commit")
        first = c.read("branch/master/head").strip().decode()

        t = "branch/master/transactions/b"
        c.mkdir(t)
        big = os.urandom(4 << 20)
        c.create(f"{t}/rw/big", big)
        c.create(f"{t}/rw/note", b"kept\n")
        with pytest.raises(RemoteError) as err:
            c.write(f"{t}/ctl", b"commit")
        assert err.value.errno == errno.ENOSPC
        assert "No space left on device" in str(err.value)

        # Nothing moved, nothing half-written is left, the transaction is intact.
        assert c.read("branch/master/head").strip().decode() == first
        leftovers = [p.name for p in (repo / "objects").rglob("tmp_obj_*")]
        assert leftovers == []
        assert c.read(f"{t}/rw/big") == big
        assert c.read(f"{t}/rw/note") == b"kept\n"

        # Once the big file is gone, the same transaction commits.
        c.remove(f"{t}/rw/big")
        c.write(f"{t}/ctl", b"commit")
        second = c.read("branch/master/head").strip().decode()
        assert second != first
        assert c.read("branch/master/ro/note") == b"kept\n"

    assert git(repo, "rev-parse", "master") == second
    assert git(repo, "rev-parse", "master^") == first
    git(repo, "fsck", "--strict")
