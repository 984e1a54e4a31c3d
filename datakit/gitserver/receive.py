"""receive-pack (``git push``), protocol v0 (git pushes with v0 over
``git://``), only with ``--git-push``.

What a push may do, and how:

* Only branches: ``refs/heads/<a valid branch name>``; any other ref is
  refused on its own (``ng``), the others go on.
* The pack is streamed to a temporary file (bounded by ``max_pack``; a
  client sending more is not read further) and checked as `git` checks a
  pack with ``transfer.fsckObjects`` (see ``datakit.store._receive``) before
  anything of it is stored. A bad pack: ``unpack <why>``, every ref
  refused, nothing stored and no branch moved.
* Each branch moves through the writer every 9p commit goes through
  (``context.write``), with the store's compare-and-swap against the old
  value the client named: a commit that landed since the client read the
  branches makes the push fail ("stale info") and is kept, never
  overwritten. Fast-forwards only, unless the server was started with
  ``--git-push=force`` (which also allows deleting branches). The writer
  announces the change on the event loop: ``head.live``, watches, the
  reflog, auto-push and the metrics see a push as they see a commit.

Each ref's result goes back in git's report-status (through side-band-64k
when the client asks for it), which git prints per ref.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from dulwich.errors import GitProtocolError
from dulwich.protocol import ReceivableProtocol, pkt_line

from datakit import __version__
from datakit.store import PushRefused, StoreError

from .daemon import GitContext

log = logging.getLogger("datakit.git")

ZERO = "0" * 40
HEADS = "refs/heads/"
MAX_COMMANDS = 10_000  # ref updates in one push: more is not a sane push
# The longest ref name accepted (git's own are far shorter: a branch name
# is a few path components).
MAX_REF = 1024
CAP_REPORT_STATUS = b"report-status"
CAP_SIDE_BAND_64K = b"side-band-64k"
CAP_QUIET = b"quiet"
CAP_DELETE_REFS = b"delete-refs"

NON_FAST_FORWARD = (
    "non-fast-forward (the server allows only fast-forwards: --git-push=force allows forced pushes)"
)
STALE = "stale info (the branch moved meanwhile: fetch and push again)"


@dataclass
class Command:
    """One ref update the client asks for; ``error`` says why it was refused."""

    old: str
    new: str
    ref: str
    error: str | None = None

    @property
    def branch(self) -> str:
        return self.ref[len(HEADS) :]

    @property
    def deletes(self) -> bool:
        return self.new == ZERO


def capabilities(push: str | None) -> list[bytes]:
    caps = [
        CAP_REPORT_STATUS,
        b"ofs-delta",
        CAP_SIDE_BAND_64K,
        CAP_QUIET,
        b"agent=datakit/" + __version__.encode("ascii"),
        b"object-format=sha1",
    ]
    if push == "force":
        caps.insert(1, CAP_DELETE_REFS)
    return caps


def advertise(proto: ReceivableProtocol, heads: dict[str, str], caps: list[bytes]) -> None:
    """The branches, capabilities after the first (for no branch at all,
    after git's ``capabilities^{}`` placeholder), and a flush."""
    refs = [(sha, HEADS + name) for name, sha in sorted(heads.items())]
    if not refs:
        refs = [(ZERO, "capabilities^{}")]
    first = True
    for sha, ref in refs:
        line = sha.encode("ascii") + b" " + ref.encode("utf-8", "surrogateescape")
        if first:
            line += b"\0" + b" ".join(caps)
            first = False
        proto.write_pkt_line(line + b"\n")
    proto.write_pkt_line(None)


def _is_hex(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


def read_commands(proto: ReceivableProtocol) -> tuple[list[Command], set[bytes]]:
    """``old new ref`` lines up to a flush; the client's capabilities ride
    on the first. ``shallow`` lines (a shallow client's) are skipped: what
    the pack's objects name must be stored anyway."""
    commands: list[Command] = []
    caps: set[bytes] = set()
    while True:
        line = proto.read_pkt_line()
        if line is None:
            return commands, caps
        if line.startswith(b"shallow "):
            continue
        line, _, rest = line.rstrip(b"\n").partition(b"\0")
        if not commands and rest:
            caps = set(rest.split())
        parts = line.split(b" ")
        if len(parts) != 3:
            raise GitProtocolError("expected `OLD NEW REF` ref update lines")
        if len(parts[2]) > MAX_REF:
            # Refused before it is kept: a push may hold MAX_COMMANDS of them.
            raise GitProtocolError(f"a ref name is longer than {MAX_REF} bytes")
        old, new = parts[0].decode("ascii", "replace"), parts[1].decode("ascii", "replace")
        if not _is_hex(old) or not _is_hex(new):
            raise GitProtocolError("a ref update names a malformed object id")
        commands.append(Command(old, new, parts[2].decode("utf-8", "surrogateescape")))
        if len(commands) > MAX_COMMANDS:
            raise GitProtocolError(f"more than {MAX_COMMANDS} ref updates in one push")


def precheck(command: Command, context: GitContext) -> str | None:
    """Why this update is refused before its objects are known, or None."""
    if not command.ref.startswith(HEADS):
        return "only branches can be pushed (refs/heads/NAME)"
    if not context.store.is_valid_branch_name(command.branch):
        return "invalid branch name"
    if command.deletes and context.push != "force":
        return "deleting branches is not allowed (--git-push=force allows it)"
    if command.old == ZERO and command.deletes:
        return "nothing to delete"
    return None


def _shown(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _alive() -> None:
    """Stops a long check when the server shuts down (the connection's
    task is cancelled); nothing outside a trio worker thread."""
    try:
        trio.from_thread.check_cancelled()
    except RuntimeError:
        pass
    except trio.Cancelled:
        raise PushRefused("the server is shutting down") from None


def _write(context: GitContext, fn: Callable[..., Any], *args: object) -> Any:
    """``fn(*args, changes=...)`` through the writer, from this worker thread."""
    return trio.from_thread.run(functools.partial(context.write, fn, *args))


def update(command: Command, context: GitContext) -> str | None:
    """Move (or delete) one branch; why not, or None when it moved."""
    store = context.store
    name = command.branch
    old = None if command.old == ZERO else command.old
    current = store.head(name)
    if current != old:
        return STALE
    if command.deletes:
        done = _write(context, functools.partial(store.set_head, expected=old), name, None)
        return None if done else STALE
    new = command.new
    if not store.has_commit(new):
        kind = store.object_type(new)
        return f"{new} is a {kind}, not a commit" if kind else "missing necessary objects"
    if old == new:
        return None
    if old is not None and context.push != "force" and not store.is_ancestor(old, new):
        return NON_FAST_FORWARD
    done = _write(context, functools.partial(store.set_head, expected=old), name, new)
    return None if done else STALE


def report(
    proto: ReceivableProtocol,
    commands: list[Command],
    unpack_error: str | None,
    caps: set[bytes],
) -> None:
    """git's report-status, through side-band when negotiated."""
    if CAP_REPORT_STATUS not in caps:
        return
    status = "ok" if unpack_error is None else _shown(unpack_error)
    lines = [pkt_line(f"unpack {status}\n".encode())]
    for command in commands:
        ref = command.ref.encode("utf-8", "surrogateescape")
        if command.error is None:
            lines.append(pkt_line(b"ok " + ref + b"\n"))
        else:
            lines.append(pkt_line(b"ng " + ref + b" " + _shown(command.error).encode() + b"\n"))
    lines.append(pkt_line(None))
    data = b"".join(lines)
    if CAP_SIDE_BAND_64K in caps:
        proto.write_sideband(1, data)
        proto.write_pkt_line(None)
    else:
        proto.write(data)


def serve_receive_pack(proto: ReceivableProtocol, context: GitContext) -> bool:
    """One push (see the module doc); whether every ref it asked for moved
    (False: a ref or the pack was refused, and the client was told why)."""
    store = context.store
    advertise(proto, store.heads(), capabilities(context.push))
    commands, caps = read_commands(proto)
    if not commands:
        return True  # nothing to push: the client says so with a flush
    for command in commands:
        command.error = precheck(command, context)
    unpack_error: str | None = None
    if any(not c.deletes for c in commands):
        keep = any(c.error is None and not c.deletes for c in commands)
        try:
            count = store.receive_pack(
                proto.recv,
                max_pack=context.max_pack,
                max_object=context.max_object,
                keep=keep,
                alive=_alive,
            )
            log.debug("git push: %d objects received", count)
        except PushRefused as exc:
            unpack_error = str(exc)
            log.info("git push refused: %s", unpack_error)
    for command in commands:
        if unpack_error is not None:
            command.error = "unpacker error"
        elif command.error is None:
            try:
                command.error = update(command, context)
            except (StoreError, OSError) as exc:
                log.warning("git push: %s: %r", command.ref, exc)
                command.error = f"failed to update: {exc}"
        log.info(
            "git push: %s %s..%s %s",
            _shown(command.ref),
            command.old[:12],
            command.new[:12],
            "ok" if command.error is None else command.error,
        )
    report(proto, commands, unpack_error, caps)
    return unpack_error is None and all(c.error is None for c in commands)
