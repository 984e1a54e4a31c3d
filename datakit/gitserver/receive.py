"""receive-pack (``git push``): not written yet."""

from __future__ import annotations

from dulwich.protocol import ReceivableProtocol

from .daemon import GitContext, Refused


def serve_receive_pack(proto: ReceivableProtocol, context: GitContext) -> None:
    raise Refused("pushing is not implemented yet")
