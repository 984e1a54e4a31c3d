"""Per-fid ordering of the requests of one connection.

9p lets a client send requests without waiting for replies.  Fids are chosen
by the client, so a client can pipeline a whole chain (`Twalk` to a new fid,
`Tcreate` on it, `Twrite`, `Tclunk`) in one round trip, provided the server
executes requests on the same fid in the order they arrived.  The session
runs most requests inline, in arrival order; only a request that may block
(a read of a live file, a write to a command file) runs in a task of its own.
This module makes later requests on the same fid wait for such a task.

A request *shares* a fid it only uses (reads and writes of an open file, a
walk from it, stat) and *owns* a fid it rebinds, opens, clunks or changes.
Shared uses of one fid may run beside each other: two processes blocked
reading one live file must not wait for each other.  An owning request waits
for every earlier request on the fid; a sharing one for the earlier owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from datakit import ninep

# Fields naming fids a request only uses; every other fid field is owned.
_SHARED: dict[type, tuple[str, ...]] = {
    ninep.Twalk: ("fid",),
    ninep.Txattrwalk: ("fid",),
    ninep.Tread: ("fid",),
    ninep.Twrite: ("fid",),
    ninep.Treaddir: ("fid",),
    ninep.Tstat: ("fid",),
    ninep.Tgetattr: ("fid",),
    ninep.Tstatfs: ("fid",),
    ninep.Treadlink: ("fid",),
    ninep.Tfsync: ("fid",),
    ninep.Tlock: ("fid",),
    ninep.Tgetlock: ("fid",),
    ninep.Tmkdir: ("dfid",),
    ninep.Tmknod: ("dfid",),
    ninep.Tsymlink: ("fid",),
    ninep.Tlink: ("dfid", "fid"),
    ninep.Trename: ("dfid",),
    ninep.Trenameat: ("olddirfid", "newdirfid"),
    ninep.Tunlinkat: ("dirfid",),
}
_OWNED: dict[type, tuple[str, ...]] = {
    ninep.Twalk: ("newfid",),
    ninep.Txattrwalk: ("newfid",),
    ninep.Trename: ("fid",),
}
_NONE: tuple[str, ...] = ()


def claims(msg: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shared fids, owned fids) of a request; a fid both shared and owned is owned."""
    cls = type(msg)
    shared_fields = _SHARED.get(cls, _NONE)
    owned_fields = _OWNED.get(cls)
    if owned_fields is None:
        owned_fields = _NONE if shared_fields else (("fid",) if hasattr(msg, "fid") else _NONE)
    owned = tuple(getattr(msg, f) for f in owned_fields)
    shared = tuple(v for v in (getattr(msg, f) for f in shared_fields) if v not in owned)
    return shared, owned


@dataclass
class _Gate:
    owner: trio.Event | None = None  # done-event of the latest owning request in flight
    sharers: list[trio.Event] = field(default_factory=list)  # sharing ones since then

    def prune(self) -> bool:
        """Forget finished requests; True if nothing is in flight on the fid."""
        if self.owner is not None and self.owner.is_set():
            self.owner = None
        self.sharers = [e for e in self.sharers if not e.is_set()]
        return self.owner is None and not self.sharers


class FidOrder:
    def __init__(self) -> None:
        self._gates: dict[int, _Gate] = {}

    def pending(self, shared: tuple[int, ...], owned: tuple[int, ...]) -> list[trio.Event]:
        """The in-flight requests a new request on these fids must wait for."""
        waits: list[trio.Event] = []
        for fid in shared:
            gate = self._gates.get(fid)
            if gate is not None and gate.owner is not None and not gate.owner.is_set():
                waits.append(gate.owner)
        for fid in owned:
            gate = self._gates.get(fid)
            if gate is not None:
                if gate.owner is not None and not gate.owner.is_set():
                    waits.append(gate.owner)
                waits.extend(e for e in gate.sharers if not e.is_set())
        return waits

    def enter(self, shared: tuple[int, ...], owned: tuple[int, ...], done: trio.Event) -> None:
        """Record a request that will run in a task and set `done` when finished."""
        for fid in shared:
            self._gates.setdefault(fid, _Gate()).sharers.append(done)
        for fid in owned:
            gate = self._gates.setdefault(fid, _Gate())
            gate.owner = done
            gate.sharers = []

    def leave(self, fids: tuple[int, ...]) -> None:
        """Drop the gates of these fids once nothing is in flight on them."""
        for fid in fids:
            gate = self._gates.get(fid)
            if gate is not None and gate.prune():
                del self._gates[fid]

    def clear(self) -> None:
        self._gates.clear()
