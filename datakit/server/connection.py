"""What the request handlers know of their connection.

The session does the I/O; the handlers (`ops`) only need the negotiated
dialect and msize, the fid table, the root and whether writes are allowed
(and if not, why).
Keeping those here, apart from the session, is what lets `ops` be imported
by the session without importing it back.
"""

from __future__ import annotations

from collections.abc import Callable

from datakit import metrics, ninep
from datakit.ninep.handshake import ServerHandshake
from datakit.server import replies
from datakit.server.fids import Fid, FidTable
from datakit.server.transport import Buffer
from datakit.vfs import Directory, FsError


class Connection:
    def __init__(
        self,
        handshake: ServerHandshake,
        make_root: Callable[[], Directory],
        *,
        max_fids: int,
        read_only: bool,
        read_only_reason: str | None = None,
    ) -> None:
        self.handshake = handshake  # the state of the connection and its settings
        self.fids = FidTable(max_fids)
        # A write's EROFS error says why when the server knows (a replica
        # names its primary); 9P2000.L clients get the errno alone.
        self.read_only = read_only or read_only_reason is not None
        self.read_only_message = "Read-only file system" + (
            f": {read_only_reason}" if read_only_reason else ""
        )
        self._make_root = make_root
        self._root: Directory | None = None

    @property
    def dialect(self) -> ninep.Dialect:
        return self.handshake.settings.dialect

    @property
    def msize(self) -> int:
        return self.handshake.settings.msize

    def get_root(self) -> Directory:
        """The connection's tree, built at the first attach."""
        if self._root is None:
            self._root = self._make_root()
        return self._root

    def bind(self, fid: int, entry: Fid) -> None:
        if self.fids.bind(fid, entry):
            metrics.FIDS.inc()

    def error_reply(self, tag: int, err: FsError) -> ninep.Message:
        settings = self.handshake.settings
        return replies.error_reply(tag, err, settings.dialect, settings.msize)

    def encode(self, reply: ninep.Message) -> tuple[Buffer, ...]:
        """The reply's buffers, to send in order. Never raises: a reply that
        cannot be sent becomes an error for its tag."""
        settings = self.handshake.settings  # (once per reply: no property calls)
        return replies.encode_reply(reply, settings.dialect, settings.msize)

    def clunk_all(self) -> None:
        """Forget every fid, as a new Tversion or the end of the connection does."""
        metrics.FIDS.dec(self.fids.clear())

    def close(self) -> None:
        self.clunk_all()
        if self._root is not None:
            self._root.detach()
