"""The 9p backend: every operation is file operations on a DataKit server's
tree (spec/filesystem.md), through the synchronous transport in
:mod:`datakit.client.ninep_client`.

One socket carries the ordinary requests. Each ``wait_for_*`` opens its own
short-lived connection for the blocking ``head.live``/``tree.live`` reads, so
a wait never stalls the other operations of the main connection (the
transport has one request in flight at a time) and cancelling a wait is just
closing its socket.
"""

from __future__ import annotations

import contextlib
import errno as E
import json
import random
from collections.abc import Iterable, Iterator

from datakit import ninep
from datakit.client.api import (
    Branch,
    Commit,
    CommitLike,
    Connection,
    Transaction,
    Tree,
    aborted,
    check_branch_name,
    check_new_name,
    check_remote_branch,
    parse_id,
)
from datakit.client.errors import (
    AlreadyExists,
    BackendError,
    Conflict,
    ConflictsRemain,
    DataKitError,
    DoesNotExist,
    FetchFailed,
    InvalidBranchName,
    InvalidHash,
    InvalidName,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotAFile,
    NotFastForward,
)
from datakit.client.ninep_client import Client, RemoteError
from datakit.client.values import (
    Cancel,
    Diff,
    Dir,
    Exec,
    File,
    Kind,
    Link,
    MergeInputs,
    MergeResult,
    PathLike,
    Stat,
    Steps,
    Value,
    path_key,
    path_str,
    to_diffs,
    to_steps,
)
from datakit.formats import (
    parse_diff,
    parse_head,
    parse_node_line,
    parse_parents,
    parse_paths,
    render_gitlink,
    render_node_id,
    render_parents,
)

DEFAULT_MSIZE = 256 * 1024
"""Large enough that a 1 MiB file takes four writes, small enough that the
receive buffer allocated for every reply stays cheap."""

WATCH_MSIZE = 64 * 1024
POLL_SECONDS = 0.05
"""How often a blocked watch checks its timeout and cancel flag."""
STREAM_READ = 4096

_IS_DIR_MESSAGES = {
    "Is a directory",
    "Can't write to directories",
    "Can't set length of a directory",
    # chmod without DMDIR on a directory: we never send DMDIR, so this means
    # "this is a directory".
    "Incorrect is_directory flag for chmod",
}
_NOT_DIR_MESSAGES = {"Is not a directory", "Not a directory", "Can't walk from a file"}
_BY_ERRNO: dict[int, type[DataKitError]] = {
    E.ENOENT: DoesNotExist,
    E.EEXIST: AlreadyExists,
    E.EISDIR: IsADirectory,
    E.ENOTDIR: NotADirectory,
}


def translate(exc: RemoteError) -> DataKitError:
    """A server error as the client error class for that situation.

    Matched on the spec's exact strings first (a 9P2000 server sends no
    errno), then on the errno of 9P2000.u replies.
    """
    msg = exc.message
    if msg == "No such file or directory":
        return DoesNotExist()
    if msg == "Already exists":
        return AlreadyExists()
    if msg in _IS_DIR_MESSAGES:
        return IsADirectory()
    if msg in _NOT_DIR_MESSAGES or msg.endswith("is not a directory"):
        return NotADirectory()
    if msg == "conflicts file is not empty":
        return ConflictsRemain()
    if msg.startswith("Merge conflict:"):
        return Conflict(msg)
    if msg == "not-fast-forward":
        return NotFastForward()
    if msg.startswith("invalid-hash"):
        return InvalidHash(msg)
    if msg.endswith("is not a valid branch name."):
        return InvalidBranchName(msg)
    if msg.startswith("Invalid name "):
        return InvalidName(msg)
    if exc.errno == E.ENAMETOOLONG:
        return NameTooLong(msg)
    cls = _BY_ERRNO.get(exc.errno)
    if cls is not None:
        return cls()
    return BackendError(msg, exc.errno)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except RemoteError as exc:
        raise translate(exc) from None


@contextlib.contextmanager
def _missing_if_not_dir() -> Iterator[None]:
    """For reads: a path through a file holds nothing (DoesNotExist), as a
    lookup in a Git tree says."""
    try:
        yield
    except NotADirectory:
        raise DoesNotExist() from None


def _kind_of_mode(mode: int) -> Kind:
    if mode & ninep.DMDIR:
        return Kind.DIR
    if mode & ninep.DMSYMLINK:
        return Kind.LINK
    if not mode & 0o222:
        return Kind.GITLINK  # the only read-only file the server shows (0444)
    return Kind.EXEC if mode & 0o100 else Kind.FILE


def _parse_diff(text: bytes) -> list[Diff]:
    return to_diffs(parse_diff(text))


class NinepConnection(Connection):
    """``connect("unix:///path")`` or ``connect("tcp://host:5640")``."""

    def __init__(
        self, address: str, *, msize: int = DEFAULT_MSIZE, timeout: float | None = None
    ) -> None:
        self.address = address
        self._timeout = timeout
        # 9P2000.u: symlinks (create with a target, DMSYMLINK in stat) need it.
        self.client = Client.connect(address, msize=msize, version="9P2000.u", timeout=timeout)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.client.close()

    # -- helpers used by the other classes ------------------------------------

    def read_bytes(self, path: Steps) -> bytes:
        with _errors():
            return self.client.read(path)

    def write_bytes(self, path: Steps, data: bytes, *, truncate: bool) -> None:
        with _errors():
            self.client.write(path, data, truncate=truncate)

    def check_exists(self, path: Steps) -> None:
        with _errors():
            self.client.clunk(self.client.walk(path))

    def read_node(self, path: Steps, *, immutable: bool) -> tuple[Stat, Value]:
        """Stat and read in one walk (walk, stat, open, read..., clunk).

        The kind comes from the stat mode, not the walk qid: servers (ours
        and upstream's) do not flag symlinks in qids. For an immutable file
        the stat length says when to stop reading, saving the final empty
        read.
        """
        client = self.client
        with _missing_if_not_dir(), _errors():
            fid = client.walk(path)
        try:
            with _errors():
                st = client.rpc(ninep.Tstat, fid=fid).stat  # type: ignore[attr-defined]
                kind = _kind_of_mode(st.mode)
                stat = Stat(kind, 0 if kind is Kind.DIR else st.length)
                if kind is Kind.LINK and st.extension:
                    return stat, Link(st.extension)
                client.rpc(ninep.Topen, fid=fid, mode=ninep.OREAD)
                chunks: list[bytes] = []
                offset = 0
                limit = st.length if immutable and kind is not Kind.DIR else None
                while limit is None or offset < limit:
                    data = client.read_fid(fid, offset)
                    if not data:
                        break
                    chunks.append(data)
                    offset += len(data)
        finally:
            with contextlib.suppress(RemoteError, OSError):
                client.clunk(fid)
        raw = b"".join(chunks)
        if kind is Kind.DIR:
            names = [s.name for s in ninep.decode_stats(raw, client.dialect)]
            names.sort(key=lambda n: n.encode("utf-8", "surrogateescape"))
            return stat, Dir(tuple(names))
        if kind is Kind.LINK:
            return Stat(kind, len(raw)), Link(raw.decode("utf-8", "surrogateescape"))
        return Stat(kind, len(raw)), File(raw)

    def read_chunks(self, path: Steps, chunk_size: int, *, immutable: bool) -> Iterator[bytes]:
        """A file's content a read at a time, each at most ``chunk_size``
        and one message: walk, stat, open and the first read in one round
        trip, then a read per piece until an empty one (for an immutable
        file: until the stat's length), then a clunk."""
        client = self.client
        count = min(chunk_size, client.iounit)
        with _missing_if_not_dir(), _errors():
            fid, st, data = client.open_and_read(path, count)
        try:
            if _kind_of_mode(st.mode) in (Kind.DIR, Kind.LINK):
                raise NotAFile()
            offset = 0
            while data:
                offset += len(data)
                yield data
                if immutable and offset >= st.length:
                    break
                with _errors():
                    data = client.read_fid(fid, offset, count)
        finally:
            with contextlib.suppress(OSError):
                client.clunk_later(fid)

    def stat_node(self, path: Steps) -> Stat | None:
        try:
            with _missing_if_not_dir(), _errors():
                st = self.client.stat(path)
        except DoesNotExist:
            return None
        kind = _kind_of_mode(st.mode)
        return Stat(kind, 0 if kind is Kind.DIR else st.length)

    # -- Connection -------------------------------------------------------------

    def branches(self) -> list[str]:
        with _errors():
            return sorted(self.client.ls(("branch",)))

    def branch(self, name: str) -> NinepBranch:
        check_branch_name(name)
        with _errors():
            self.client.mkdir(("branch", name))  # succeeds if it exists
        return NinepBranch(self, name)

    def remove_branch(self, name: str) -> None:
        check_branch_name(name)
        with contextlib.suppress(DoesNotExist), _errors():
            self.client.remove(("branch", name))

    def commit(self, id: str) -> NinepCommit:
        sha = parse_id(id)
        self.check_exists(("commits", sha))
        return NinepCommit(self, sha)

    def tree(self, id: str) -> NinepTree:
        path = ("trees", render_node_id(Kind.DIR, parse_id(id.removeprefix("D-"), "tree")))
        self.check_exists(path)
        return NinepTree(self, path)

    def fetch(self, url: str, branch: str) -> NinepCommit:
        check_remote_branch(branch)
        remote = ("remotes", f"fetch-{random.getrandbits(63)}")
        with _errors():
            self.client.mkdir(remote)
        try:
            self.write_bytes((*remote, "url"), url.encode(), truncate=True)
            try:
                self.write_bytes((*remote, "fetch"), branch.encode(), truncate=False)
            except BackendError as exc:
                raise FetchFailed(exc.message) from None
            head = parse_head(self.read_bytes((*remote, "head"))) or ""
        finally:
            # Upstream servers cannot remove remotes; ours can. Best effort.
            with contextlib.suppress(RemoteError, OSError):
                self.client.remove(remote)
        return NinepCommit(self, parse_id(head))

    # -- watches -------------------------------------------------------------------

    def stream_lines(
        self, branch: str, path: Steps, deadline: float | None, cancel: Cancel | None
    ) -> Iterator[bytes]:
        """The latest line of a live file each time it changes (without its
        newline).

        Runs on a connection of its own and reads at the running offset; per
        the stream rules a read with data is followed by one empty read, so
        two empty reads in a row mean the stream ended.
        """
        if cancel is not None and cancel.is_set():
            return
        client = Client.connect(self.address, msize=WATCH_MSIZE, version="9P2000.u")
        try:
            with _errors():
                client.mkdir(("branch", branch))
                fid = client.open(("branch", branch, *path))
            offset = 0
            pending = b""
            empty_reads = 0
            while True:
                # The current value is always delivered (it never blocks), even
                # if setting up the watch outlasted the timeout.
                data = self._stream_read(client, fid, offset, deadline if offset else None, cancel)
                if data is None:
                    return
                if not data:
                    empty_reads += 1
                    if empty_reads >= 2:
                        raise BackendError("End-of-file from monitor stream!")
                    continue
                empty_reads = 0
                offset += len(data)
                pending += data
                if b"\n" in pending:
                    complete, _, pending = pending.rpartition(b"\n")
                    # Only the newest value matters: older ones are history.
                    yield complete.rsplit(b"\n", 1)[-1]
        finally:
            client.close()

    @staticmethod
    def _stream_read(
        client: Client, fid: int, offset: int, deadline: float | None, cancel: Cancel | None
    ) -> bytes | None:
        """One read that may block for long; None if the wait was aborted
        (the pending request dies with the connection)."""
        if aborted(deadline, cancel):
            return None
        client.send(ninep.Tread(tag=client.next_tag(), fid=fid, offset=offset, count=STREAM_READ))
        while True:
            reply = client.receive_within(POLL_SECONDS)
            if reply is not None:
                break
            if aborted(deadline, cancel):
                return None
        if isinstance(reply, ninep.Rerror):
            raise translate(RemoteError(reply.ename, reply.errno))
        return reply.data  # type: ignore[attr-defined,no-any-return]


class NinepTree(Tree):
    """A read-only tree under a path prefix (``snapshots/<id>/ro``,
    ``trees/D-<hash>``, ``transactions/<t>/ours``...). Trees never change, so
    results are memoised."""

    def __init__(self, conn: NinepConnection, prefix: Steps) -> None:
        self._conn = conn
        self._prefix = prefix
        self._reads: dict[Steps, Value] = {}
        self._stats: dict[Steps, Stat | None] = {}

    def __repr__(self) -> str:
        return f"<NinepTree {'/'.join(self._prefix)}>"

    def read(self, path: PathLike) -> Value:
        steps = to_steps(path)
        value = self._reads.get(steps)
        if value is None:
            stat, value = self._conn.read_node((*self._prefix, *steps), immutable=True)
            self._reads[steps] = value
            self._stats[steps] = stat
        return value

    def _chunks(self, path: PathLike, chunk_size: int) -> Iterator[bytes]:
        steps = to_steps(path)
        return self._conn.read_chunks((*self._prefix, *steps), chunk_size, immutable=True)

    def stat(self, path: PathLike) -> Stat | None:
        steps = to_steps(path)
        if steps in self._stats:
            return self._stats[steps]
        stat = self._stats[steps] = self._conn.stat_node((*self._prefix, *steps))
        return stat


class NinepCommit(Commit):
    def __init__(self, conn: NinepConnection, id: str) -> None:
        self._conn = conn
        self.id = id
        self._message: str | None = None
        self._parents: list[Commit] | None = None
        self._info: tuple[str, int] | None = None

    @property
    def message(self) -> str:
        if self._message is None:
            raw = self._conn.read_bytes(("snapshots", self.id, "msg"))
            self._message = raw.decode("utf-8", "replace")
        return self._message

    @property
    def parents(self) -> list[Commit]:
        if self._parents is None:
            raw = self._conn.read_bytes(("snapshots", self.id, "parents"))
            self._parents = [NinepCommit(self._conn, p) for p in parse_parents(raw)]
        return list(self._parents)

    def _tree_and_time(self) -> tuple[str, int]:
        # commits/<id> is upstream's JSON record of the commit: the one
        # place 9p names a commit's tree and time.
        if self._info is None:
            raw = self._conn.read_bytes(("commits", self.id))
            try:
                value = json.loads(raw)["value"]
                self._info = (str(value["node"]), int(value["info"]["date"]))
            except (ValueError, KeyError, TypeError) as e:
                raise BackendError(f"commits/{self.id}: unexpected record: {e}") from None
        return self._info

    @property
    def tree_id(self) -> str:
        return self._tree_and_time()[0]

    @property
    def time(self) -> int:
        return self._tree_and_time()[1]

    def tree(self) -> NinepTree:
        return NinepTree(self._conn, ("snapshots", self.id, "ro"))

    def diff(self, other: Commit) -> list[Diff]:
        return _parse_diff(self._conn.read_bytes(("snapshots", self.id, "diff", other.id)))


class NinepBranch(Branch):
    def __init__(self, conn: NinepConnection, name: str) -> None:
        self._conn = conn
        self.name = name
        self._dir: Steps = ("branch", name)

    def head(self) -> NinepCommit | None:
        head = parse_head(self._conn.read_bytes((*self._dir, "head")))
        return NinepCommit(self._conn, head) if head else None

    def fast_forward(self, commit: CommitLike) -> None:
        sha = self._conn._commit_id(commit)
        self._conn.write_bytes((*self._dir, "fast-forward"), sha.encode(), truncate=False)

    def transaction(self) -> NinepTransaction:
        for _ in range(3):
            name = str(random.getrandbits(63))
            try:
                with _errors():
                    self._conn.client.mkdir((*self._dir, "transactions", name))
            except AlreadyExists:
                continue
            return NinepTransaction(self._conn, self, (*self._dir, "transactions", name))
        raise AlreadyExists("could not pick a fresh transaction name")

    def remove(self) -> None:
        self._conn.remove_branch(self.name)

    def _head_events(
        self, deadline: float | None, cancel: Cancel | None
    ) -> Iterator[Commit | None]:
        for line in self._conn.stream_lines(self.name, ("head.live",), deadline, cancel):
            head = parse_head(line)
            yield NinepCommit(self._conn, head) if head else None

    def _path_events(
        self, path: Steps, deadline: float | None, cancel: Cancel | None
    ) -> Iterator[File | Exec | Link | Tree | None]:
        live = (*(f"{step}.node" for step in path), "tree.live")
        for line in self._conn.stream_lines(self.name, ("watch", *live), deadline, cancel):
            yield self._node(line)

    def _node(self, line: bytes) -> File | Exec | Link | Tree | None:
        try:
            node = parse_node_line(line, Kind)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        if node is None:
            return None
        kind, sha = node
        path = ("trees", render_node_id(kind, sha))
        if kind is Kind.DIR:
            return NinepTree(self._conn, path)
        if kind is Kind.GITLINK:  # a submodule: its commit is not in this repository
            return File(render_gitlink(sha))
        data = self._conn.read_bytes(path)
        if kind is Kind.EXEC:
            return Exec(data)
        if kind is Kind.LINK:
            return Link(data.decode("utf-8", "surrogateescape"))
        return File(data)


class NinepTransaction(Transaction):
    """``branch/<b>/transactions/<t>/``: edits go to ``rw/``."""

    def __init__(self, conn: NinepConnection, branch: NinepBranch, dir: Steps) -> None:
        super().__init__()
        self._conn = conn
        self._client = conn.client
        self.branch = branch
        self._dir = dir
        self._rw: Steps = (*dir, "rw")
        self._msg_written = False  # msg starts empty: no truncate needed

    def __repr__(self) -> str:
        return f"<NinepTransaction {'/'.join(self._dir)}>"

    def _path(self, path: PathLike) -> Steps:
        self._check_open()
        return (*self._rw, *to_steps(path))

    # -- reads ------------------------------------------------------------------

    def read(self, path: PathLike) -> Value:
        return self._conn.read_node(self._path(path), immutable=False)[1]

    def _chunks(self, path: PathLike, chunk_size: int) -> Iterator[bytes]:
        return self._conn.read_chunks(self._path(path), chunk_size, immutable=False)

    def stat(self, path: PathLike) -> Stat | None:
        return self._conn.stat_node(self._path(path))

    # -- writes -------------------------------------------------------------------

    def create_dir(self, path: PathLike) -> None:
        full = self._path(path)
        if full == self._rw:
            raise AlreadyExists()
        check_new_name(full[-1], directory=True)
        with _errors():
            self._client.mkdir(full)

    def _create(self, path: PathLike, data: bytes, perm: int, extension: str = "") -> None:
        full = self._path(path)
        if full == self._rw:
            raise IsADirectory()
        check_new_name(full[-1], symlink=bool(perm & ninep.DMSYMLINK))
        with _errors():
            self._client.create(full, data, perm=perm, extension=extension)

    def create_file(self, path: PathLike, data: bytes, executable: bool = False) -> None:
        self._create(path, data, 0o755 if executable else 0o644)

    def create_symlink(self, path: PathLike, target: str) -> None:
        if self._client.dialect is not ninep.Dialect.U:
            raise BackendError("symlinks need a 9P2000.u session")
        self._create(path, b"", ninep.DMSYMLINK | 0o755, target)

    def replace_file(self, path: PathLike, data: bytes) -> None:
        full = self._path(path)
        if full == self._rw:
            raise IsADirectory()
        with _errors():
            self._client.write(full, data, truncate=True)

    def set_executable(self, path: PathLike, executable: bool) -> None:
        full = self._path(path)
        if full == self._rw:
            raise IsADirectory()
        with _errors():
            self._client.chmod(full, 0o755 if executable else 0o644)

    def remove(self, path: PathLike) -> None:
        full = self._path(path)
        with _errors():
            if full == self._rw:
                # rw itself cannot be removed: empty it instead.
                for name in self._client.ls(full):
                    self._client.remove((*full, name))
                return
            self._client.remove(full)

    def truncate(self, path: PathLike, length: int) -> None:
        if length < 0:
            raise ValueError(f"Negative offset {length}")
        full = self._path(path)
        with _errors():
            self._client.truncate(full, length)

    # -- merging and history ----------------------------------------------------------

    def merge(self, commit: CommitLike) -> MergeResult:
        self._check_open()
        sha = self._conn._commit_id(commit)
        self._conn.write_bytes((*self._dir, "merge"), sha.encode(), truncate=False)
        # The views are replaced by the next merge: each merge gets new Tree
        # objects (with empty memos) for its own inputs.
        inputs = MergeInputs(
            NinepTree(self._conn, (*self._dir, "ours")),
            NinepTree(self._conn, (*self._dir, "theirs")),
            NinepTree(self._conn, (*self._dir, "base")),
        )
        return MergeResult(inputs, self.conflicts())

    def parents(self) -> list[Commit]:
        self._check_open()
        raw = self._conn.read_bytes((*self._dir, "parents"))
        return [NinepCommit(self._conn, p) for p in parse_parents(raw)]

    def set_parents(self, parents: Iterable[CommitLike]) -> None:
        self._check_open()
        ids = [self._conn._commit_id(p) for p in parents]
        self._conn.write_bytes((*self._dir, "parents"), render_parents(ids), truncate=True)

    def conflicts(self) -> list[str]:
        self._check_open()
        try:
            raw = self._conn.read_bytes((*self._dir, "conflicts"))
        except DoesNotExist:
            return []  # no merge yet: the file appears with the first merge
        # The server orders by last component first; both backends use path order.
        return sorted((path_str(p) for p in parse_paths(raw)), key=path_key)

    def diff(self, commit: CommitLike) -> list[Diff]:
        self._check_open()
        sha = self._conn._commit_id(commit)
        return _parse_diff(self._conn.read_bytes((*self._dir, "diff", sha)))

    def commit(self, message: str) -> None:
        self._check_open()
        msg = (*self._dir, "msg")
        self._conn.write_bytes(msg, message.encode(), truncate=self._msg_written)
        self._msg_written = True
        self._conn.write_bytes((*self._dir, "ctl"), b"commit", truncate=False)
        self._closed = True

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RemoteError, OSError):
            self._client.write((*self._dir, "ctl"), b"close", truncate=False)
