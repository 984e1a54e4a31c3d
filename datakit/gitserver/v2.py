"""upload-pack, protocol v2 (git's Documentation/gitprotocol-v2.txt).

dulwich 1.2 has no server side for v2, so this module speaks it: the
capability advertisement, then a loop of commands until the client closes
the connection or sends a flush-pkt: ``ls-refs`` and ``fetch`` (wants,
haves, ``done``, shallow clients, ``deepen`` (also relative),
``deepen-since``, ``deepen-not``, ``want-ref``). What v2 has in
common with v0 is reused: :func:`.shallow.boundary` for shallow
boundaries, :func:`objects_to_send` to choose the objects,
:func:`send_pack` to stream the pack from the store.

Each command reads one snapshot of the branches (:class:`StoreRepo`), so a
command sees one consistent state while 9p clients keep committing.

What a client may ask for: the tips of the branches this connection was
shown (by any of its ``ls-refs`` or ``fetch`` snapshots, so that a branch
moving between ``ls-refs`` and ``fetch`` does not fail the clone), or a
branch by name (``want-ref``). Other objects, even reachable ones, are
refused: ``allow-reachable-sha1-in-want`` is not offered (proving
reachability is a walk of history per want).

Bounds: a pkt-line is at most 65520 bytes by construction; arguments are
read one line at a time and only wants, haves and shallow lines are kept,
each capped (see ``MAX_*``): a request over a cap is refused, never
buffered.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dulwich.errors import GitProtocolError, HangupException
from dulwich.objects import Commit, ObjectID
from dulwich.protocol import ReceivableProtocol
from dulwich.refs import Ref
from dulwich.server import _all_wants_satisfied

import datakit
from datakit.store import Store

from .limits import MAX_HAVES, MAX_SHALLOWS, MAX_WANTS
from .pack import send_pack
from .repo import DEFAULT_BRANCH, HEAD, StoreObjects, StoreRepo
from .shallow import boundary
from .walk import objects_to_send

if TYPE_CHECKING:
    from .daemon import GitContext

# ref-prefix lines: more than this and the filter is dropped (all refs are
# listed, which is always correct), as git's own ls-refs does.
MAX_PREFIXES = 1024
# Tips remembered per connection as wantable (see the module docstring).
MAX_REMEMBERED_TIPS = 100_000

MAX_PKT = 65520  # bytes of a pkt-line, its four length digits included

AGENT = f"datakit/{datakit.__version__}"
CAPABILITIES = (
    b"version 2",
    b"agent=" + AGENT.encode("ascii"),
    b"ls-refs=unborn",
    b"fetch=shallow wait-for-done ref-in-want",
    b"object-format=sha1",
)


class _Marker:
    """A special pkt-line: flush (0000), delim (0001), response-end (0002)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


FLUSH = _Marker("flush-pkt")
DELIM = _Marker("delim-pkt")
RESPONSE_END = _Marker("response-end-pkt")
_MARKERS = {0: FLUSH, 1: DELIM, 2: RESPONSE_END}

Packet = bytes | _Marker | None  # None: the client closed the connection


def read_packet(proto: ReceivableProtocol) -> Packet:
    """The next pkt-line: its payload, a marker, or None at a clean EOF.

    dulwich's ``read_pkt_line`` reads flush and delim alike as None, and v2
    tells them apart, hence this reader."""
    head = proto.read(4)
    if not head:
        return None
    if len(head) < 4:
        raise HangupException()
    try:
        if not all(c in b"0123456789abcdefABCDEF" for c in head):
            raise ValueError
        size = int(head, 16)
    except ValueError:
        raise GitProtocolError(f"invalid pkt-line length prefix {head!r}") from None
    if size in _MARKERS:
        return _MARKERS[size]
    if size < 4 or size > MAX_PKT:
        raise GitProtocolError(f"invalid pkt-line length {size}")
    body = proto.read(size - 4) if size > 4 else b""
    if len(body) != size - 4:
        raise HangupException()
    return body


def _line(packet: bytes) -> bytes:
    return packet[:-1] if packet.endswith(b"\n") else packet


def _oid(value: bytes, what: str) -> ObjectID:
    if len(value) != 40 or not all(c in b"0123456789abcdef" for c in value):
        raise GitProtocolError(f"{what}: not an object id: {value[:60]!r}")
    return ObjectID(value)


def _show(value: bytes) -> str:
    return value[:80].decode("utf-8", "replace")


@dataclass
class _Fetch:
    """One ``fetch`` request's arguments."""

    wants: dict[ObjectID, None] = field(default_factory=dict)  # ordered set
    want_refs: dict[bytes, ObjectID] = field(default_factory=dict)
    haves: dict[ObjectID, None] = field(default_factory=dict)
    client_shallow: set[ObjectID] = field(default_factory=set)
    depth: int | None = None
    relative: bool = False
    since: int | None = None  # deepen-since: a commit time
    deepen_not: list[ObjectID] = field(default_factory=list)  # deepen-not: their history
    done: bool = False
    progress: bool = True
    wait_for_done: bool = False

    @property
    def deepen(self) -> bool:
        """Whether the client asked for a new shallow boundary."""
        return self.depth is not None or self.since is not None or bool(self.deepen_not)


class Session:
    """One v2 connection: the command loop and what it remembers (the tips
    it was shown, and what to count it as in the metrics)."""

    def __init__(self, proto: ReceivableProtocol, store: Store) -> None:
        self.proto = proto
        self.store = store
        self.shown: set[ObjectID] = set()
        self.fetches = 0
        self.common_seen = False

    # -- framing ---------------------------------------------------------

    def write(self, line: bytes) -> None:
        self.proto.write_pkt_line(line + b"\n")

    def flush(self) -> None:
        self.proto.write_pkt_line(None)

    def delim(self) -> None:
        self.proto.write(b"0001")

    def arguments(self) -> Iterator[bytes]:
        """A command's argument lines, up to its flush-pkt, one at a time."""
        while True:
            packet = read_packet(self.proto)
            if packet is None:
                raise HangupException()
            if packet is FLUSH:
                return
            if isinstance(packet, _Marker):
                raise GitProtocolError(f"unexpected {packet} among a command's arguments")
            yield _line(packet)

    def remember(self, repo: StoreRepo) -> None:
        for oid in repo.get_refs().values():
            if len(self.shown) >= MAX_REMEMBERED_TIPS:
                return
            self.shown.add(oid)

    # -- the loop --------------------------------------------------------

    def serve(self) -> str:
        for capability in CAPABILITIES:
            self.write(capability)
        self.flush()
        while True:
            command = self.read_command()
            if command is None:
                break
            name, has_arguments = command
            arguments = self.arguments() if has_arguments else iter(())
            if name == "ls-refs":
                self.ls_refs(arguments)
            else:
                self.fetch(arguments)
        if not self.fetches:
            return "ls-remote"
        return "fetch" if self.common_seen else "clone"

    def read_command(self) -> tuple[str, bool] | None:
        """``command=NAME`` and its capability lines: (NAME, whether
        arguments follow); None when the client is done (EOF, or a
        flush-pkt instead of a command)."""
        first = read_packet(self.proto)
        if first is None or first is FLUSH:
            return None
        if isinstance(first, _Marker) or not first.startswith(b"command="):
            shown = first if isinstance(first, _Marker) else repr(_show(first))
            raise GitProtocolError(f"expected command=..., got {shown}")
        name = _line(first)[len(b"command=") :].decode("utf-8", "replace")
        if name not in ("ls-refs", "fetch"):
            raise GitProtocolError(f"unknown command {name[:80]!r}")
        while True:
            packet = read_packet(self.proto)
            if packet is None:
                raise HangupException()
            if packet is DELIM:
                return name, True
            if packet is FLUSH:  # no delim-pkt: no arguments
                return name, False
            if isinstance(packet, _Marker):
                raise GitProtocolError(f"unexpected {packet} after command={name}")
            self.check_capability(_line(packet))

    def check_capability(self, line: bytes) -> None:
        key, _, value = line.partition(b"=")
        if key == b"agent":
            return
        if key == b"object-format":
            if value != b"sha1":
                raise GitProtocolError(
                    f"object-format {_show(value)!r} is not supported (this server has sha1)"
                )
            return
        raise GitProtocolError(f"unknown capability {_show(key)!r}")

    # -- ls-refs ---------------------------------------------------------

    def ls_refs(self, arguments: Iterator[bytes]) -> None:
        symrefs = unborn = False
        prefixes: list[bytes] = []
        too_many = False
        for line in arguments:
            if line == b"symrefs":
                symrefs = True
            elif line == b"peel":
                pass  # branches hold commits: nothing to peel
            elif line == b"unborn":
                unborn = True
            elif line.startswith(b"ref-prefix "):
                if len(prefixes) < MAX_PREFIXES:
                    prefixes.append(line[len(b"ref-prefix ") :])
                else:
                    too_many = True
            else:
                raise GitProtocolError(f"ls-refs: unexpected argument {_show(line)!r}")
        if too_many:
            prefixes = []

        def listed(name: bytes) -> bool:
            return not prefixes or any(name.startswith(p) for p in prefixes)

        repo = StoreRepo(self.store)
        self.remember(repo)
        refs = repo.get_refs()
        for name in sorted(refs, key=lambda n: (n != HEAD, n)):
            if not listed(name):
                continue
            line = refs[name] + b" " + name
            if name == HEAD and symrefs and repo.default_branch is not None:
                line += b" symref-target:" + repo.default_branch
            self.write(line)
        if repo.default_branch is None and unborn and listed(HEAD):
            # An empty database: HEAD names the branch the first commit
            # will most likely make, as git's own unborn HEAD does.
            line = b"unborn HEAD"
            if symrefs:
                line += b" symref-target:refs/heads/" + DEFAULT_BRANCH.encode()
            self.write(line)
        self.flush()

    # -- fetch -----------------------------------------------------------

    def read_fetch(self, repo: StoreRepo, arguments: Iterator[bytes]) -> _Fetch:
        request = _Fetch()
        refs = repo.get_refs()
        for line in arguments:
            word, _, value = line.partition(b" ")
            if word == b"want":
                if len(request.wants) >= MAX_WANTS:
                    raise GitProtocolError(f"more than {MAX_WANTS} want lines in one request")
                request.wants[_oid(value, "want")] = None
            elif word == b"have":
                if len(request.haves) >= MAX_HAVES:
                    raise GitProtocolError(f"more than {MAX_HAVES} have lines in one request")
                request.haves[_oid(value, "have")] = None
            elif word == b"want-ref":
                oid = refs.get(Ref(value))
                if oid is None:
                    raise GitProtocolError(f"unknown ref {_show(value)}")
                if len(request.want_refs) >= MAX_WANTS:
                    raise GitProtocolError(f"more than {MAX_WANTS} want-ref lines in one request")
                request.want_refs[value] = oid
            elif word == b"shallow":
                if len(request.client_shallow) >= MAX_SHALLOWS:
                    raise GitProtocolError(f"more than {MAX_SHALLOWS} shallow lines in one request")
                request.client_shallow.add(_oid(value, "shallow"))
            elif word == b"deepen":
                if not value.isdigit() or int(value) < 1:
                    raise GitProtocolError(f"deepen: not a depth: {_show(value)!r}")
                request.depth = int(value)
            elif line == b"deepen-relative":
                request.relative = True
            elif word == b"deepen-since":
                if not value.isdigit():
                    raise GitProtocolError(f"deepen-since: not a time: {_show(value)!r}")
                request.since = int(value)
            elif word == b"deepen-not":
                if len(request.deepen_not) >= MAX_SHALLOWS:
                    raise GitProtocolError(f"more than {MAX_SHALLOWS} deepen-not lines")
                request.deepen_not.append(_resolve(refs, value))
            elif line == b"done":
                request.done = True
            elif line == b"no-progress":
                request.progress = False
            elif line == b"wait-for-done":
                request.wait_for_done = True
            elif line in (b"thin-pack", b"ofs-delta", b"include-tag"):
                # No deltas are sent and branches hold no tags: nothing to do.
                pass
            else:
                raise GitProtocolError(f"fetch: unexpected argument {_show(line)!r}")
        if request.depth is not None and (request.since is not None or request.deepen_not):
            raise GitProtocolError(
                "deepen and deepen-since (or deepen-not) cannot be used together"
            )
        return request

    def check_wants(self, repo: StoreRepo, request: _Fetch) -> None:
        tips = set(repo.get_refs().values())
        objects = repo.object_store
        for want in request.wants:
            if want in tips or want in self.shown:
                continue
            text = want.decode("ascii")
            if want in objects:
                raise GitProtocolError(
                    f"upload-pack: not our ref {text} (only branch tips this server "
                    "advertised may be fetched)"
                )
            raise GitProtocolError(f"upload-pack: not our ref {text} (no such object)")

    def fetch(self, arguments: Iterator[bytes]) -> None:
        repo = StoreRepo(self.store)
        request = self.read_fetch(repo, arguments)
        self.check_wants(repo, request)
        self.remember(repo)
        self.fetches += 1
        objects = repo.object_store
        wants = list(request.wants) + [o for o in request.want_refs.values()]
        if not wants:
            raise GitProtocolError("fetch: no want or want-ref lines")
        # Commits only: a have is a commit by the protocol, and the "ready"
        # check below reads each as one.
        common = [h for h in request.haves if self.store.object_type(h.decode()) == "commit"]
        if common:
            self.common_seen = True

        if not request.done:
            self.write(b"acknowledgments")
            if not common:
                self.write(b"NAK")
            for have in common:
                self.write(b"ACK " + have)
            ready = (
                bool(common)
                and not request.wait_for_done
                and _all_wants_satisfied(objects, set(common), set(wants))
            )
            if not ready:
                self.flush()  # the client sends another round
                return
            self.write(b"ready")
            self.delim()

        shallow: set[ObjectID] = set()
        extra_heads: list[ObjectID] = []
        if request.deepen:
            shallow, unshallow = self.shallow_info(objects, request, wants)
            for oid in unshallow:
                # The client has these commits but not their parents, which
                # a walk from the wants would stop before (they are common).
                commit = objects[oid]
                if isinstance(commit, Commit):
                    extra_heads.extend(commit.parents)
        if request.want_refs:
            self.write(b"wanted-refs")
            for name, oid in request.want_refs.items():
                self.write(oid + b" " + name)
            self.delim()

        ids = objects_to_send(
            self.store,
            [oid.decode("ascii") for oid in wants + extra_heads],
            [oid.decode("ascii") for oid in common],
            [oid.decode("ascii") for oid in request.client_shallow | shallow],
        )
        self.write(b"packfile")
        if request.progress:
            self.progress(f"counting objects: {len(ids)}, done.\n".encode("ascii"))
        try:
            # send_pack's pieces are at most one side-band-64k pkt-line.
            send_pack(
                lambda piece: self.proto.write_sideband(1, piece),
                self.store,
                [oid.encode("ascii") for oid in ids],
            )
        except Exception as exc:
            # Inside the packfile section git reads errors on channel 3.
            self.proto.write_pkt_line(b"\x03" + str(exc).encode("utf-8", "replace")[:1000])
            raise
        self.flush()

    def shallow_info(
        self, objects: StoreObjects, request: _Fetch, wants: list[ObjectID]
    ) -> tuple[set[ObjectID], set[ObjectID]]:
        """Write the shallow-info section; return (the new boundary, the
        client's shallow commits that are no longer shallow)."""
        if request.depth is None:
            shallow, not_shallow = _deepen_by_history(objects, wants, request)
        else:
            # deepen-relative: deeper by N than what the client has, so
            # counted from its boundary.
            heads = request.client_shallow if request.relative else wants
            depth = request.depth + 1 if request.relative else request.depth
            found, kept = boundary(self.store, [h.decode("ascii") for h in heads], depth)
            shallow = {ObjectID(c.encode("ascii")) for c in found}
            not_shallow = {ObjectID(c.encode("ascii")) for c in kept}
        unshallow = not_shallow & request.client_shallow
        self.write(b"shallow-info")
        for oid in sorted(shallow - request.client_shallow):
            self.write(b"shallow " + oid)
        for oid in sorted(unshallow):
            self.write(b"unshallow " + oid)
        self.delim()
        return shallow, unshallow

    def progress(self, message: bytes) -> None:
        self.proto.write_pkt_line(b"\x02" + message)


def _resolve(refs: Mapping[Ref, ObjectID], name: bytes) -> ObjectID:
    """deepen-not's ref, as git would name it: in full, or a branch name."""
    for candidate in (name, b"refs/heads/" + name):
        oid = refs.get(Ref(candidate))
        if oid is not None:
            return oid
    raise GitProtocolError(f"deepen-not: no such ref {_show(name)!r}")


def _deepen_by_history(
    objects: StoreObjects, wants: list[ObjectID], request: _Fetch
) -> tuple[set[ObjectID], set[ObjectID]]:
    """deepen-since and deepen-not (git's ``rev-list --max-age=T WANTS
    --not REFS``): the commits reachable from the wants through commits no
    older than T and not in the refs' history; those with a parent left out
    are the new boundary. Returns (boundary, every commit kept)."""
    excluded: set[ObjectID] = set()
    pending = list(request.deepen_not)
    while pending:
        oid = pending.pop()
        if oid not in excluded:
            excluded.add(oid)
            commit = objects[oid]
            if isinstance(commit, Commit):
                pending.extend(commit.parents)
    kept: set[ObjectID] = set()
    parents: dict[ObjectID, list[ObjectID]] = {}
    pending = list(wants)
    while pending:
        oid = pending.pop()
        if oid in kept or oid in excluded or oid not in objects:
            continue
        commit = objects[oid]
        if not isinstance(commit, Commit):
            continue
        if request.since is not None and commit.commit_time < request.since:
            continue
        kept.add(oid)
        parents[oid] = commit.parents
        pending.extend(commit.parents)
    if not kept:
        raise GitProtocolError("no commits selected for shallow requests")
    boundary = {oid for oid in kept if any(p not in kept for p in parents[oid])}
    return boundary, kept - boundary


def serve_v2(proto: ReceivableProtocol, context: GitContext) -> str:
    """Serve a protocol v2 upload-pack connection until the client is done;
    the service label its success counts under in the metrics: "ls-remote"
    (no fetch), "clone" (no fetch found anything in common) or "fetch"."""
    return Session(proto, context.store).serve()
