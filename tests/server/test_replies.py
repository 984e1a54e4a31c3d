"""A reply that cannot be sent costs its request an error, never the connection.

Error strings that echo client input are cut so they fit every msize."""

from __future__ import annotations

import errno
import logging
import subprocess
from pathlib import Path

import pytest

from datakit.client.ninep_client import Client, RemoteError
from datakit.ninep.handshake import MIN_MSIZE
from datakit.server.replies import MAX_ERROR_BYTES
from tests.serverthread import running_server

LEVEL = "debug/src/datakit/level"


@pytest.mark.parametrize("msize", [MIN_MSIZE, 8192, 1024 * 1024])
def test_an_error_echoing_a_huge_write_is_cut_and_the_session_lives(
    server: str, msize: int
) -> None:
    with Client.connect(server, msize=msize, timeout=30) as c:
        # The level file answers a bad level by quoting it: the whole write.
        junk = b"x" * min(100_000, c.msize - 24)
        with pytest.raises(RemoteError) as info:
            c.write(LEVEL, junk)
        assert info.value.errno == errno.EINVAL
        assert info.value.message.startswith("invalid level 'xxx")
        assert info.value.message.endswith("...")
        assert len(info.value.message.encode()) <= min(MAX_ERROR_BYTES, c.msize - 13)
        c.write(LEVEL, b"warning")  # the same connection still answers
        assert c.read(LEVEL) == b"warning\n"


def test_a_reply_larger_than_msize_becomes_an_error(example_server: str) -> None:
    name = "n" * 200  # a Twalk naming it still fits 256 bytes
    with Client.connect(example_server, timeout=10) as big:
        big.create(name, b"data")
    with Client.connect(example_server, msize=MIN_MSIZE, timeout=10) as c:
        assert c.msize == MIN_MSIZE
        # Rstat carries the 200-byte name and more: it cannot fit in 256 bytes.
        with pytest.raises(RemoteError) as info:
            c.stat(name)
        assert info.value.errno == errno.EMSGSIZE
        assert c.stat(()).name == "/"  # the connection lives on


def git(cwd: Path, *args: str, data: bytes | None = None) -> str:
    return (
        subprocess.run(["git", *args], cwd=cwd, input=data, check=True, capture_output=True)
        .stdout.decode()
        .strip()
    )


def test_a_symlink_target_that_is_not_utf8_never_ends_the_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "repo.git"
    git(tmp_path, "init", "-q", "--bare", str(repo))
    blob = git(repo, "hash-object", "-w", "--stdin", data=b"\xff\xfe-target")
    tree = git(repo, "mktree", data=f"120000 blob {blob}\tlink\n".encode())
    commit = git(repo, "commit-tree", tree, "-m", "odd link")
    git(repo, "update-ref", "refs/heads/master", commit)
    caplog.set_level(logging.ERROR, "datakit.server")
    with running_server(tmp_path, git=str(repo)) as address:
        with Client.connect(address, timeout=10) as c:
            # 9P2000.u carries a symlink's target in its stat, alone (Tstat) or
            # in a directory listing: whatever the server makes of these
            # bytes, it answers, never with "Internal error", and carries on.
            errors = 0
            for step in (lambda: c.stat("branch/master/ro/link"), lambda: c.ls("branch/master/ro")):
                try:
                    step()
                except RemoteError as err:
                    assert err.errno == errno.EIO and "Internal error" not in err.message
                    errors += 1
            assert c.stat(()).name == "/"
    # Each failure is logged once, with its traceback.
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == errors
