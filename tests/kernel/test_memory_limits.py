"""Issue 8: memory bounded by configuration, seen from the Linux 9p client.

The VM mounts `datakit serve --git REPO --max-file-size 1G` and runs
scripts/memory_limits.sh: a 24-byte write at 512 MiB, a truncate to 768 MiB,
EFBIG past the maximum, a commit and reads back. The server's peak resident
memory must stay far below those sizes (the unfixed server allocated them).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kernelsupport import assert_guest_ok

pytestmark = pytest.mark.kernel


def vm_hwm_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("dialect", ["9p2000.u", "9p2000.L"])
def test_sparse_files_and_size_limits(vm, datakit_server, tmp_path: Path, dialect: str) -> None:
    repo = tmp_path / "db"
    srv = datakit_server("--git", str(repo), "--max-file-size", "1G")
    res = vm.run_file("memory_limits.sh", port=srv.port, version=dialect, timeout=300)
    assert_guest_ok(res, srv)
    assert "memory_limits: OK" in res.stdout
    assert vm_hwm_mib(srv.proc.pid) < 200
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "-s", "master:grown"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert int(out.stdout) == 768 << 20
    subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"], check=True)
