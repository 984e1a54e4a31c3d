"""Every way to write through 9p fails on a replica with EROFS, and the
message names the primary (its password hidden)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from datakit import ninep
from datakit.client import BackendError
from datakit.client.ninep_client import Client, RemoteError
from tests.replica.helpers import client, commit, heads, primary, replica, wait_for


def refused(action: Callable[[], object]) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        action()
    assert info.value.errno == errno.EROFS
    return info.value


def test_writes_to_a_replica_fail_with_erofs_naming_the_primary(tmp_path: Path) -> None:
    with primary() as (p, _), client(p["9p"]) as writer:
        head = commit(writer, "master", "a", b"a")
        port = p["git"]
        # A password in the URL never reaches a client (nor the log).
        url = f"git://user:secret@127.0.0.1:{port}/"
        expected = (
            f"Read-only file system: a replica of git://user:***@127.0.0.1:{port}/; "
            "write to the primary"
        )
        with replica(url) as (r, _):
            wait_for(lambda: heads(r["9p"]).get("master") == head, "the replica")
            address = f"tcp://127.0.0.1:{r['9p']}"

            # The client API: opening an existing branch works (it is no
            # write), a transaction does not.
            with client(r["9p"]) as conn:
                master = conn.branch("master")
                assert master.head().id == head  # type: ignore[union-attr]
                with pytest.raises(BackendError) as info:
                    master.transaction()
                assert info.value.errno == errno.EROFS
                assert str(info.value) == expected
                with pytest.raises(BackendError):
                    conn.branch("new")

            # 9P2000.u: every request that writes, with the message.
            with Client.connect(address) as c:
                attempts: list[Callable[[], object]] = [
                    lambda: c.mkdir("branch/new"),
                    lambda: c.mkdir("branch/master/transactions/t"),
                    lambda: c.mkdir("remotes/origin"),
                    lambda: c.create("file", b"x"),
                    lambda: c.write("branch/master/fast-forward", head.encode(), truncate=False),
                    lambda: c.remove("branch/master"),
                    lambda: c.rename("branch/master", "other"),
                    lambda: c.truncate("branch/master/fast-forward", 0),
                ]
                for attempt in attempts:
                    assert refused(attempt).message == expected
                c.mkdir("branch/master")  # exists: fine

            # 9P2000.L: the errno (Rlerror carries no message).
            with Client.connect(address, version="9P2000.L") as c:
                branch_dir = c.walk("branch")
                refused(lambda: c.rpc(ninep.Tmkdir, dfid=branch_dir, name="new", mode=0o755, gid=0))
                refused(lambda: c.rpc(ninep.Tunlinkat, dirfid=branch_dir, name="master", flags=0))
                refused(
                    lambda: c.rpc(
                        ninep.Trenameat,
                        olddirfid=branch_dir,
                        oldname="master",
                        newdirfid=branch_dir,
                        newname="other",
                    )
                )
                root = c.walk(())
                refused(
                    lambda: c.rpc(ninep.Tlcreate, fid=root, name="f", flags=0, mode=0o644, gid=0)
                )

            assert heads(r["9p"]) == {"master": head}
        assert heads(p["9p"]) == {"master": head}
