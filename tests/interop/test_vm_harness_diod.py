"""Validates the kernel-test harness (tests/kernel/vm9p.py + fixtures) against
diod, the reference C 9p server (9P2000.L only), and validates the guest
scripts that the DataKit kernel tests run.

diod needs no auth (-n) and the export path as aname: opts=f"aname={export}".
"""

import shutil
import tempfile
from pathlib import Path

import pytest
from kernelsupport import SCRIPTS, assert_guest_ok, diod_argv

pytestmark = pytest.mark.kernel


@pytest.fixture
def diod(ninep_server):
    # The kernel's first Tattach has uname "nobody" (no uname= option), and
    # diod checks the export as that user: it must be reachable by "nobody",
    # so no pytest tmp_path (under a 0700 /tmp/pytest-of-root).
    export = Path(tempfile.mkdtemp(prefix="diod-export-"))
    export.chmod(0o755)
    srv = ninep_server(diod_argv(export))
    srv.export = export
    yield srv
    srv.stop()
    shutil.rmtree(export, ignore_errors=True)


@pytest.mark.parametrize("version", ["9p2000.L", None], ids=["9p2000.L", "no-version"])
def test_guest_write_visible_on_host(vm, diod, version):
    (diod.export / "host.txt").write_text("hello from the host\n")
    script = r"""
set -e
grep " $VM9P_MNT " /proc/mounts
[ "$(cat host.txt)" = "hello from the host" ]
echo "hello from the guest" > guest.txt
mkdir sub && echo nested > sub/n.txt
echo "guest: OK"
"""
    res = vm.run(script, port=diod.port, version=version, opts=f"aname={diod.export}")
    assert_guest_ok(res, diod)
    assert "guest: OK" in res.stdout
    mounts = res.stdout.splitlines()[0]
    if version is None:
        assert "version=" not in res.status["mount_opts"]
    else:
        assert f"version={version}" in res.status["mount_opts"]
    assert "aname=" in mounts
    assert (diod.export / "guest.txt").read_text() == "hello from the guest\n"
    assert (diod.export / "sub" / "n.txt").read_text() == "nested\n"
    assert res.status["result"] == "ok"
    assert res.status["accel"] in ("tcg", "kvm")


def test_exit_status_and_stderr_propagate(vm, diod):
    res = vm.run("echo out; echo err >&2; exit 42", port=diod.port, opts=f"aname={diod.export}")
    assert res.returncode == 42, res.describe()
    assert res.status["result"] == "ok"
    assert res.stdout == "out\n"
    assert "err" in res.stderr


def test_mount_failure_is_123(vm, diod):
    # diod speaks only 9P2000.L: a 9p2000.u mount fails ("Bad address")
    res = vm.run(
        "echo should-not-run", port=diod.port, version="9p2000.u", opts=f"aname={diod.export}"
    )
    assert res.returncode == 123, res.describe()
    assert res.status["result"] == "mount-failed"
    assert "should-not-run" not in res.stdout


def test_no_mount_script_mounts_itself(vm, diod):
    script = f"""
set -e
! grep -q " $VM9P_MNT " /proc/mounts
mkdir -p /m
mount -t 9p -o trans=tcp,port=$VM9P_PORT,aname={diod.export} $VM9P_HOST /m
echo self > /m/self.txt
umount /m
"""
    res = vm.run(script, port=diod.port, no_mount=True)
    assert_guest_ok(res, diod)
    assert (diod.export / "self.txt").read_text() == "self\n"


def test_timeout_is_124(vm, diod):
    res = vm.run("sleep 600", port=diod.port, opts=f"aname={diod.export}", timeout=15)
    assert res.returncode == 124, res.describe()
    assert res.status["result"] == "timeout"


def test_a_guest_that_never_reaches_init_is_booted_again_then_fails(vm, diod):
    """The boot watchdog: a guest stuck before init is killed and booted again
    (a hang seen once in TCG on a loaded host), and after three such boots
    the harness fails (125) instead of waiting out the whole timeout. A
    0.2 s limit makes every boot count as hung."""
    res = vm.run(
        "exit 0",
        port=diod.port,
        opts=f"aname={diod.export}",
        timeout=60,
        extra_args=["--boot-timeout", "0.2"],
    )
    assert res.returncode == 125, res.describe()
    assert res.status["result"] == "boot-hung"
    assert res.status["boot_retries"] == 2
    assert "booting again (attempt 3 of 3)" in res.stderr


@pytest.mark.parametrize("version", ["9p2000.L", None], ids=["9p2000.L", "no-version"])
def test_posix_basics_script_on_diod(vm, diod, version):
    """The issue-2 guest script itself is correct (on a server known to work)."""
    (diod.export / "preexisting").write_text("keep me\n")
    res = vm.run_file(
        "posix_basics.sh", port=diod.port, version=version, opts=f"aname={diod.export}", timeout=270
    )
    assert_guest_ok(res, diod)
    assert "posix_basics: OK" in res.stdout
    assert sorted(p.name for p in diod.export.iterdir()) == ["preexisting"]


def test_posix_basics_script_reports_failures(vm, diod):
    """A failing step shows up as a clear FAIL line naming the step, not a
    silent exit (failure injected by shadowing `truncate` with a function)."""
    script = "truncate() { return 1; }\n" + (SCRIPTS / "posix_basics.sh").read_text()
    res = vm.run(script, port=diod.port, opts=f"aname={diod.export}")
    assert res.returncode == 1, res.describe()
    assert res.status["result"] == "ok"
    assert 'FAIL: step "truncate -s (shrink)"' in res.stdout, res.describe()
