"""upload-pack, protocol v0/v1: dulwich's handler (its negotiation,
multi-ack, shallow and done handling), with the pack written by
:func:`datakit.gitserver.pack.send_pack` straight from the store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from dulwich.errors import GitProtocolError
from dulwich.objects import ObjectID
from dulwich.protocol import (
    CAPABILITY_FILTER,
    CAPABILITY_NO_DONE,
    COMMAND_DEEPEN,
    COMMAND_FILTER,
    COMMAND_HAVE,
    COMMAND_SHALLOW,
    COMMAND_WANT,
)
from dulwich.server import UploadPackHandler, _ProtocolGraphWalker, _split_proto_line

from datakit.store import Store

from .limits import MAX_HAVES, MAX_SHALLOWS, MAX_WANTS
from .pack import send_pack
from .repo import StoreRepo
from .shallow import boundary


class _OneRepo:
    """dulwich's ``Backend``: every path names the one database."""

    def __init__(self, repo: StoreRepo) -> None:
        self.repo = repo

    def open_repository(self, path: str) -> StoreRepo:
        return self.repo


_LIMITS = {COMMAND_WANT: MAX_WANTS, COMMAND_HAVE: MAX_HAVES, COMMAND_SHALLOW: MAX_SHALLOWS}


class _Walker(_ProtocolGraphWalker):
    """dulwich's v0 negotiation, with:

    * at most MAX_WANTS want, MAX_HAVES have and MAX_SHALLOWS shallow lines
      (dulwich keeps them all: memory grew with what a client sent);
    * a shallow client's plain fetch (its shallow lines and no deepen),
      which dulwich refused with "unexpected flush-pkt";
    * depths checked, and boundaries found in one linear walk (.shallow);
    * a count of the commits the client has that we have too (0: a clone).
    """

    common = 0

    def __init__(self, handler: Any, store: Store, *args: Any) -> None:
        super().__init__(handler, *args)
        self._store = store
        self._lines: Counter[bytes] = Counter()

    def ack(self, have_ref: Any) -> None:
        self.common += 1
        super().ack(have_ref)

    def read_proto_line(self, allowed: Any) -> tuple[bytes | None, bytes | int | None]:
        line = self.proto.read_pkt_line()
        words = line.rstrip(b"\n").split(b" ", 1) if line else [b""]
        limit = _LIMITS.get(words[0])
        if limit is not None:
            self._lines[words[0]] += 1
            if self._lines[words[0]] > limit:
                name = words[0].decode("ascii")
                raise GitProtocolError(f"too many {name} lines (at most {limit})")
        if words[0] == COMMAND_FILTER:
            # dulwich accepts it even unoffered, and the pack would ignore it.
            raise GitProtocolError("filter: partial clones are not offered by this server")
        if words[0] == COMMAND_DEEPEN:
            value = words[1] if len(words) == 2 else b""
            if not (value.isascii() and value.isdigit() and int(value) > 0):
                shown = value[:20].decode("ascii", "replace")
                raise GitProtocolError(f"invalid deepen {shown!r}: a positive number of commits")
        return _split_proto_line(line, allowed)

    def _handle_shallow_request(self, wants: Sequence[ObjectID]) -> None:
        depth: int | None = None
        while True:
            command, value = self.read_proto_line((COMMAND_DEEPEN, COMMAND_SHALLOW, None))
            if command is None:
                return  # shallow lines and no deepen: the history is cut where it is
            if command == COMMAND_DEEPEN:
                assert isinstance(value, int)
                depth = value
                break
            assert isinstance(value, bytes)
            self.client_shallow.add(ObjectID(value))
        self.read_proto_line((None,))  # the flush that ends the request
        found, kept = boundary(self._store, [w.decode("ascii") for w in wants], depth)
        self.shallow.update(ObjectID(c.encode("ascii")) for c in found)
        kept_ids = {ObjectID(c.encode("ascii")) for c in kept}
        self.unshallow = kept_ids & self.client_shallow
        self.update_shallow(self.shallow - self.client_shallow, self.unshallow)


class UploadPack(UploadPackHandler):
    """One upload-pack request (``git clone``, ``fetch``, ``ls-remote``)."""

    def __init__(self, repo: StoreRepo, proto: Any) -> None:
        super().__init__(_OneRepo(repo), ["/"], proto)  # type: ignore[arg-type]
        self.store_repo = repo
        self.wanted = 0  # commits the client asked for: 0 for ls-remote
        self.common = 0  # commits the client has that we have: 0 for a clone

    def capabilities(self) -> list[bytes]:
        # Partial clones (filter) are not offered: dulwich's filtering needs
        # the whole object list in memory twice and walks trees again.
        return [c for c in super().capabilities() if c != CAPABILITY_FILTER]

    def handle(self) -> None:
        self._processing_have_lines = True
        walker = _Walker(
            self,
            self.store_repo.store,
            self.repo.object_store,
            self.repo.get_peeled,
            self.repo.refs.get_symrefs,
        )
        wants: list[bytes] = []

        def determine_wants(refs: Any, depth: int | None = None) -> list[Any]:
            wants.extend(walker.determine_wants(refs, depth))
            return wants  # type: ignore[return-value]

        missing = self.repo.find_missing_objects(
            determine_wants, walker, self.progress, get_tagged=self.get_tagged
        )
        self.wanted = len(wants)
        if not wants or missing is None:
            return
        ids = [oid for oid, _hint in missing]
        self.common = walker.common
        if not walker.handle_done(not self.has_capability(CAPABILITY_NO_DONE), self._done_received):
            return
        self._start_pack_send_phase()
        self.progress(f"counting objects: {len(ids)}, done.\n".encode("ascii"))
        send_pack(self.write_pack_data, self.store_repo.store, ids)
        self.proto.write_pkt_line(None)
