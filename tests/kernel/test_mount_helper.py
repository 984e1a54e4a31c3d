"""Issue 5: `datakit mount` runs a mount command the Linux kernel accepts.

The guest VM has no Python, so the helper runs on the host to produce its
command (`--dry-run`), and the guest runs exactly that command against the
server and uses the mount.  The helper's own error reporting is checked on
this host, whose kernel has no 9p at all.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
from kernelsupport import assert_guest_ok

pytestmark = pytest.mark.kernel


def helper_command(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "datakit", "mount", "--dry-run", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return shlex.split(out)


@pytest.mark.parametrize("dialect", ["9p2000.L", "9p2000.u", "9p2000"])
def test_mount_command_works_in_the_kernel(vm, datakit_server, dialect: str) -> None:
    srv = datakit_server()
    cmd = helper_command("--version-9p", dialect, "-p", str(srv.port), "GUESTHOST", "/db")
    assert cmd[:3] == ["mount", "-t", "9p"]
    guest_cmd = shlex.join(cmd).replace("GUESTHOST", '"$VM9P_HOST"')
    script = f"""
set -e
cd /
umount /db 2>/dev/null || true
mkdir -p /db
{guest_cmd}
grep ' /db 9p ' /proc/mounts
ls /db | tr '\\n' ' '
echo
mkdir /db/branch/master
mkdir /db/branch/master/transactions/t
echo mounted-by-helper > /db/branch/master/transactions/t/rw/proof
echo commit > /db/branch/master/transactions/t/ctl
cat /db/branch/master/ro/proof
"""
    res = vm.run(script, port=srv.port, version=dialect, no_mount=True, timeout=180)
    assert_guest_ok(res, srv)
    assert "branch commits debug remotes snapshots trees" in res.stdout
    assert "mounted-by-helper" in res.stdout
    mount_line = res.stdout.splitlines()[0]
    assert "msize=262144" in mount_line
    # /proc/mounts names the legacy dialects; 9P2000.L is the kernel default and unnamed.
    marker = {"9p2000.L": "access=client", "9p2000.u": "version=9p2000.u", "9p2000": "noextend"}
    assert marker[dialect] in mount_line, mount_line


def test_helper_explains_missing_privilege_or_9p(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "datakit", "mount", "127.0.0.1", str(tmp_path / "mnt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    if os.geteuid() != 0:
        assert "needs root" in result.stderr
    else:
        # This host's kernel has no 9p (that is why the tests boot a VM).
        assert "no 9p filesystem" in result.stderr or "mount -t 9p" in result.stderr
