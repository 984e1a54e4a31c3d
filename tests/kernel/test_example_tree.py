"""Issue 2: the Linux kernel 9p client on `datakit serve --example-tree`.

For each protocol version (and a mount with no version= option at all, the
kernel default 9P2000.L) boot a VM, mount the server and run
scripts/posix_basics.sh (create/write/append/truncate/rename/rm/mkdir/rmdir/
stat/nested dirs/a file larger than msize) in the mount root.
"""

import pytest
from kernelsupport import ALL_VERSIONS, assert_guest_ok, version_id

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=version_id)
def test_posix_basics_example_tree(vm, datakit_server, version):
    srv = datakit_server("--example-tree")
    res = vm.run_file("posix_basics.sh", port=srv.port, version=version, timeout=270)
    assert_guest_ok(res, srv)
    assert "posix_basics: OK" in res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("version", ["9p2000.L"])
def test_posix_basics_large_msize(vm, datakit_server, version):
    """Same script with msize=1 MiB requested (the kernel may negotiate down).

    Small reads/writes are ~3x slower per request with msize=1 MiB on the
    guest's 6.1 kernel than with the default msize (busybox cmp/md5sum read in
    4 KiB pieces; cache=none sends each as a Tread), hence the smaller large
    file, the single protocol version and the longer guest timeout (pytest's
    own limit is 300 s; this took 180 s on a loaded 2-CPU machine)."""
    srv = datakit_server("--example-tree")
    res = vm.run_file(
        "posix_basics.sh",
        port=srv.port,
        version=version,
        opts="msize=1048576",
        env={"BIG_MIB": "2"},
        timeout=270,
    )
    assert_guest_ok(res, srv)
    assert "posix_basics: OK" in res.stdout
