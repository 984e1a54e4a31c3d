"""Issue 10's "done when", through the Linux kernel 9p client.

Tried as a new user would, following only docs/bridges.md: `datakit serve`
(in memory), `datakit bridge local --metadata-store tcp:127.0.0.1:PORT
me/p:REPO` as its own process, and a VM that mounts the server at /db with
the kernel's default mount (9P2000.L) and runs scripts/bridge_local.sh: it
reads the branch heads, commits to a branch `vm-ready` to say it is ready,
waits for the head of master to change while the host runs `git commit` in
the repository, and sets a status with the docs' shell example. The host
checks the new head and the status files with `datakit.client`, then stops
the bridge with SIGTERM.

`vm.run_file` blocks until the guest is done, so it runs in a thread and
the host's side (waiting for `vm-ready`, committing) in the test's thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from kernelsupport import GuestResult, ServerProcess, assert_guest_ok

from datakit.client import AGAIN, Commit, connect
from tests.bridges.localbridge import BRANCH, Bridge, head_of, make_repo, sha, wait_for_tree
from tests.gitrepo import git

pytestmark = pytest.mark.kernel

MASTER = "me/p/ref/heads/master/head"
FEATURE = "me/p/ref/heads/feature/x/head"
STATUS = "me/p/commit/{sha}/status/ci/datakit/test"


class Guest(threading.Thread):
    """`vm.run_file(...)` in a thread; ``done`` is set when it returns."""

    def __init__(self, vm: object, **kw: object) -> None:
        super().__init__(daemon=True)
        self.vm, self.kw = vm, kw
        self.done = threading.Event()
        self.result: GuestResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.vm.run_file("bridge_local.sh", **self.kw)  # type: ignore[attr-defined]
        except BaseException as e:  # reported by the test's thread
            self.error = e
        finally:
            self.done.set()


def guest_value(res: GuestResult, name: str) -> str:
    for line in res.stdout.splitlines():
        if line.startswith(name + "="):
            return line.split("=", 1)[1]
    raise AssertionError(f"the guest printed no {name}=:\n{res.describe()}")


def describe(srv: ServerProcess, bridge: Bridge) -> str:
    return f"{srv.describe()}\n--- bridge log ---\n{bridge.log()[-4000:]}"


def test_bridge_local_as_the_docs_say(vm, datakit_server, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")  # branches master and feature/x
    master, feature = sha(repo, "master"), sha(repo, "feature/x")
    srv = datakit_server()  # `datakit serve`: in memory
    # docs/bridges.md: `datakit bridge local me/p:/path/to/repo`, with the
    # server's address given as its table of addresses says.
    bridge = Bridge(
        ["--metadata-store", f"tcp:127.0.0.1:{srv.port}", f"me/p:{repo}"], tmp_path / "bridge.log"
    )
    try:
        with connect(f"tcp://127.0.0.1:{srv.port}") as conn:
            wait_for_tree(
                conn,
                lambda _c, t: (
                    head_of(t, MASTER) == f"{master}\n" and head_of(t, FEATURE) == f"{feature}\n"
                ),
                timeout=30,
            )
            guest = Guest(
                vm, port=srv.port, version=None, env={"MASTER": master, "FEATURE": feature}
            )
            guest.start()
            ready = conn.branch("vm-ready").wait_for_head(
                lambda h: h if h is not None else AGAIN, timeout=230, cancel=guest.done
            )
            if isinstance(ready, Commit):  # else the guest failed: reported below
                (repo / "README").write_text("changed by the host\n")
                git(repo, "add", "README")
                git(repo, "commit", "-q", "-m", "a commit while the VM watches")
            guest.join(300)
            assert not guest.is_alive(), "vm.run_file did not return"
            if guest.error is not None:
                raise guest.error
            assert guest.result is not None
            assert_guest_ok(guest.result, srv)
            res = guest.result
            assert "bridge_local: OK" in res.stdout, res.describe() + describe(srv, bridge)

            new = sha(repo, "master")
            assert new != master
            assert guest_value(res, "NEW_MASTER") == new
            assert guest_value(res, "STATUS_SHA") == new

            tree = conn.branch(BRANCH).head().tree()  # type: ignore[union-attr]
            status = STATUS.format(sha=new)
            assert tree.read_file(f"{status}/state") == b"pending\n"
            assert tree.read_file(f"{status}/description") == b"Running tests\n"
            assert tree.read_file(f"{status}/target_url") == b"http://ci/run/1\n"
            assert head_of(tree, MASTER) == f"{new}\n"
            assert head_of(tree, FEATURE) == f"{feature}\n"
        assert bridge.proc.poll() is None, describe(srv, bridge)
    finally:
        code = bridge.stop()  # SIGTERM
    assert code == 0, describe(srv, bridge)
    log = bridge.log()
    assert "Traceback" not in log and "ERROR" not in log, log
