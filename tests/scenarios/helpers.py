"""Shell-like steps over a real 9p connection, shared by the scenario tests.

Each helper is what one line of a scenario in spec/scenarios.md does through
a mount (`mkdir`, `echo x > f`, `cat f`), spelled as the 9p messages Linux
sends, so the tests read like the checklist they implement.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from datakit import ninep
from datakit.client.ninep_client import Client, RemoteError, blank_stat
from tests.gitdaemon import GitRemote as GitRemote
from tests.gitdaemon import free_port as free_port

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
UNKNOWN_COMMIT = "a3827c5d1a2ba8c6a40eded5598dba8d3835fb35"
ROOT_ENTRIES = {"branch", "commits", "debug", "remotes", "snapshots", "trees"}
# Long enough for any local request, short enough that a hung server fails fast.
TIMEOUT = 30.0
# How long a read must stay unanswered to count as "blocked".
BLOCKED = 0.3


def error_of(fn: object, *args: object, **kwargs: object) -> str:
    """Run one step that must fail and return the server's error string."""
    with pytest.raises(RemoteError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value.message


def tx(c: Client, branch: str = "master", name: str = "t") -> str:
    """`mkdir branch/<b>; mkdir branch/<b>/transactions/<name>`: the T of the spec."""
    c.mkdir(f"branch/{branch}")
    c.mkdir(f"branch/{branch}/transactions/{name}")
    return f"branch/{branch}/transactions/{name}"


def put(c: Client, path: str, data: bytes, *, perm: int = 0o644) -> None:
    """`mkdir -p $(dirname path); printf data > path` (creating intermediate dirs)."""
    parts = path.split("/")
    rw = parts.index("rw")
    for i in range(rw + 2, len(parts)):
        d = "/".join(parts[:i])
        if not c.exists(d):
            c.mkdir(d)
    c.create(path, data, perm=perm)


def symlink(c: Client, path: str, target: str) -> None:
    """`ln -s target path` on a 9P2000.u session."""
    c.create(path, perm=ninep.DMSYMLINK | 0o777, extension=target)


def echo(c: Client, path: str, data: bytes) -> None:
    """`echo -n data > path`: Twstat length 0, then one Twrite."""
    c.write(path, data)


def commit(c: Client, t: str) -> None:
    """`echo commit > T/ctl`."""
    c.write(f"{t}/ctl", b"commit\n")


def head(c: Client, branch: str = "master") -> str:
    """`cat branch/<b>/head`, trimmed (empty when the branch has no head)."""
    return c.read(f"branch/{branch}/head").decode().strip()


def commit_files(
    c: Client,
    files: dict[str, bytes],
    *,
    branch: str = "master",
    msg: bytes = b"",
    remove: tuple[str, ...] = (),
    name: str = "commit-files",
) -> str:
    """One transaction that removes `remove`, writes `files`, commits; returns the new head."""
    t = tx(c, branch, name)
    for path in remove:
        c.remove(f"{t}/rw/{path}")
    for path, data in files.items():
        put(c, f"{t}/rw/{path}", data)
    if msg:
        echo(c, f"{t}/msg", msg)
    commit(c, t)
    return head(c, branch)


def parents_of(c: Client, commit_id: str) -> set[str]:
    """Parents of a commit as a set (upstream sorts them; the order is not specified)."""
    return set(c.read(f"snapshots/{commit_id}/parents").decode().split())


def message_of(c: Client, commit_id: str) -> bytes:
    """The exact stored message (`snapshots/<id>/msg` adds one newline)."""
    msg = c.read(f"snapshots/{commit_id}/msg")
    assert msg.endswith(b"\n")
    return msg[:-1]


def commit_json(c: Client, commit_id: str) -> dict[str, object]:
    return json.loads(c.read(f"commits/{commit_id}"))  # type: ignore[no-any-return]


def wstat(c: Client, fid: int, **changes: object) -> None:
    c.rpc(ninep.Twstat, fid=fid, stat=blank_stat(**changes))


def mode_of(c: Client, path: str) -> int:
    return c.stat(path).mode


@contextmanager
def connect(address: str, **kwargs: object) -> Iterator[Client]:
    """A second (or third) connection, as a second mount would be."""
    with Client.connect(address, timeout=TIMEOUT, **kwargs) as c:  # type: ignore[arg-type]
        yield c


class Stream:
    """An open live file (`head.live`, `tree.live`, `reflog`, remote `head`).

    Reads the way the Linux client does: always at the running offset, and
    `line()` skips the one empty reply that follows every data reply (the
    flush rule), checking that two empty replies never come in a row.
    """

    def __init__(self, c: Client, path: str) -> None:
        self.c = c
        self.fid = c.open(path)
        self.offset = 0
        self.after_data = False

    def read(self, count: int = 1000) -> bytes:
        data = self.c.read_fid(self.fid, self.offset, count)
        if not data:
            assert self.after_data, "two empty replies in a row on a live stream"
        self.after_data = bool(data)
        self.offset += len(data)
        return data

    def line(self) -> bytes:
        """The next data reply (blocking until the value changes if need be)."""
        data = self.read()
        if not data:
            data = self.read()
            assert data, "two empty replies in a row on a live stream"
        return data

    def flush_reply(self) -> None:
        """The empty reply that must follow a data reply."""
        assert self.after_data
        assert self.read() == b""

    def start_read(self, count: int = 1000) -> int:
        """Send a Tread that is expected to block; returns its tag."""
        if self.after_data:
            self.flush_reply()
        return start(self.c, ninep.Tread, fid=self.fid, offset=self.offset, count=count)

    def finish_read(self, tag: int) -> bytes:
        reply = self.c.receive()
        assert isinstance(reply, ninep.Rread), reply
        assert reply.tag == tag
        self.offset += len(reply.data)
        self.after_data = bool(reply.data)
        return reply.data


def start(c: Client, cls: type, **fields: object) -> int:
    """Send a request without waiting for its reply; returns its tag."""
    tag = c.next_tag()
    c.send(cls(tag=tag, **fields))
    return tag


def assert_silent(c: Client, wait: float = BLOCKED) -> None:
    """Nothing arrives on the connection for `wait` seconds (a read is blocked)."""
    old = c.sock.gettimeout()
    c.sock.settimeout(wait)
    try:
        with pytest.raises(TimeoutError):
            msg = c.receive()
            raise AssertionError(f"unexpected reply {msg!r}")
    finally:
        c.sock.settimeout(old)


def cancel(c: Client, tag: int) -> None:
    """Tflush a pending request and check that only Rflush comes back."""
    flush_tag = start(c, ninep.Tflush, oldtag=tag)
    reply = c.receive()
    assert isinstance(reply, ninep.Rflush) and reply.tag == flush_tag, reply


def stats_of(data: bytes, c: Client) -> list[ninep.Stat]:
    return ninep.decode_stats(data, c.dialect)  # type: ignore[no-any-return]
