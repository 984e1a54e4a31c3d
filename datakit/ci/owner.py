"""One CI per database: the ``datakit-ci-owner`` branch names the running CI.

Two CIs on one ``github-metadata`` would run every job twice and fight over
the statuses, so the second refuses to start (the issue allows refusing or
coordinating; refusing is the one that cannot go subtly wrong). The claim
is a file written at start through a transaction, so two CIs starting at
once cannot both win, and removed at a clean stop. A claim left by a CI that
died is taken over when its process is provably gone (same host, pid not
running, or a different boot); from another host that cannot be checked,
so ``--take-over`` says the operator knows it is dead.

No heartbeat: it would be a commit every few seconds, forever, in a store
whose history is kept.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from datakit.client import Conflict, Connection, DataKitError

BRANCH = "datakit-ci-owner"
FILE = "owner"


class AlreadyRunning(Exception):
    """Another CI holds the database (one line for the user)."""


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    boot: str
    started: float

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _boot_id(), time.time())

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> Owner | None:
        try:
            raw = json.loads(data)
            return cls(str(raw["host"]), int(raw["pid"]), str(raw["boot"]), float(raw["started"]))
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def where(self) -> tuple[int, str]:
        return self.pid, self.host

    def provably_gone(self) -> bool:
        """True when this claim's process cannot be running any more."""
        if self.host != socket.gethostname():
            return False
        if self.boot != _boot_id():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return self.pid == os.getpid()  # our own pid, reused after a restart


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def claim(conn: Connection, me: Owner, *, take_over: bool = False) -> Owner | None:
    """Write our claim; return the previous owner taken over (None if there
    was none). Raise :class:`AlreadyRunning` if another CI holds it."""
    branch = conn.branch(BRANCH)
    for _ in range(5):
        with branch.transaction() as tx:
            previous = Owner.decode(tx.read_file(FILE)) if tx.exists_file(FILE) else None
            if (
                previous is not None
                and previous != me
                and not take_over
                and not previous.provably_gone()
            ):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(previous.started))
                raise AlreadyRunning(
                    f"another DataKitCI is running on this database (pid {previous.pid} "
                    f"on {previous.host}, since {since}); two would run every job twice. "
                    f"Stop it first; if it is dead, start with --take-over"
                )
            tx.create_or_replace_file(FILE, me.encode())
            try:
                tx.commit(f"DataKitCI started (pid {me.pid} on {me.host})")
            except Conflict:
                continue
            return previous
    raise AlreadyRunning("another DataKitCI is starting on this database at the same moment")


def release(conn: Connection, me: Owner) -> None:
    """Remove our claim (at a clean stop); leave anyone else's alone."""
    branch = conn.branch(BRANCH)
    try:
        with branch.transaction() as tx:
            if tx.exists_file(FILE) and Owner.decode(tx.read_file(FILE)) == me:
                tx.remove(FILE)
                tx.commit(f"DataKitCI stopped (pid {me.pid} on {me.host})")
            else:
                tx.abort()
    except DataKitError:
        pass  # a claim left behind is taken over by the next start on this host
