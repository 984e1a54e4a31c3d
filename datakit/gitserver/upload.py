"""upload-pack, protocol v0/v1: dulwich's handler (its negotiation,
multi-ack, shallow and done handling), with the pack written by
:func:`datakit.gitserver.pack.send_pack` straight from the store."""

from __future__ import annotations

from typing import Any

from dulwich.protocol import (
    CAPABILITY_FILTER,
    CAPABILITY_NO_DONE,
)
from dulwich.server import UploadPackHandler, _ProtocolGraphWalker

from .pack import send_pack
from .repo import StoreRepo


class _OneRepo:
    """dulwich's ``Backend``: every path names the one database."""

    def __init__(self, repo: StoreRepo) -> None:
        self.repo = repo

    def open_repository(self, path: str) -> StoreRepo:
        return self.repo


class _Walker(_ProtocolGraphWalker):
    """Counts the commits the client has that we have too (0: a clone)."""

    common = 0

    def ack(self, have_ref: Any) -> None:
        self.common += 1
        super().ack(have_ref)


class UploadPack(UploadPackHandler):
    """One upload-pack request (``git clone``, ``fetch``, ``ls-remote``)."""

    def __init__(self, repo: StoreRepo, proto: Any) -> None:
        super().__init__(_OneRepo(repo), ["/"], proto)  # type: ignore[arg-type]
        self.store_repo = repo
        self.wanted = 0  # commits the client asked for: 0 for ls-remote
        self.common = 0  # commits the client has that we have: 0 for a clone
        self.sent_objects = 0

    def capabilities(self) -> list[bytes]:
        # Partial clones (filter) are not offered: dulwich's filtering needs
        # the whole object list in memory twice and walks trees again.
        return [c for c in super().capabilities() if c != CAPABILITY_FILTER]

    def handle(self) -> None:
        self._processing_have_lines = True
        walker = _Walker(
            self, self.repo.object_store, self.repo.get_peeled, self.repo.refs.get_symrefs
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
        self.sent_objects = len(ids)
        self.proto.write_pkt_line(None)
