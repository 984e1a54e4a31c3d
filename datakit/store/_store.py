"""The versioned store: objects, branches with compare-and-swap, commit
integration (fast-forward or merge), change notification and remotes.

Synchronous and single-threaded: callers serialise access (the server runs
it in one worker thread).
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from datakit.formats import Change

from ._content import Limits
from ._errors import (
    FetchError,
    InvalidHash,
    IsADirectory,
    NotFastForward,
    NotFound,
    StoreError,
)
from ._objects import (
    AUTHOR,
    COMMIT,
    EMPTY_TREE,
    LOOSE_COMPRESSION,
    TREE,
    TYPE_NAMES,
    BlobReader,
    CommitInfo,
    Entry,
    ObjectDB,
    parse_commit_body,
    serialize_commit,
)
from ._refs import DiskRefs, Durable, MemoryRefs, check_branch_name, is_valid_branch_name
from ._transaction import integrate
from ._transport import FetchGuard, RemotePolicy, shown_url
from ._tree import EditableTree, TreeView, diff_trees

log = logging.getLogger("datakit.store")

_HEX = re.compile(r"[0-9a-fA-F]*\Z")

Listener = Callable[[str, "str | None"], None]

# Commits a fetch offers the remote as ones we have (our heads first). A
# remote that knows none of them sends all the wanted head reaches: more
# bytes, never a wrong result.
MAX_HAVES = 256


class BranchChange(NamedTuple):
    """A branch moved to ``head`` (None: deleted)."""

    branch: str
    head: str | None


def _is_sha(text: str) -> bool:
    return len(text) == 40 and _HEX.match(text) is not None


def _loose_compression(config: Any) -> int:
    """The zlib level git would use for loose objects in this repository:
    core.looseCompression, else core.compression, else best speed."""
    for name in (b"looseCompression", b"compression"):
        try:
            level = int(config.get(b"core", name))
        except (KeyError, ValueError):
            continue
        if -1 <= level <= 9:
            return level
    return LOOSE_COMPRESSION


def _create(path: str, work_tree: str | None) -> Any:
    """A new repository at ``path`` (see :meth:`Store.open`), as a dulwich Repo."""
    from dulwich.repo import Repo

    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise StoreError(f"{path} exists and is not a git repository")
    os.makedirs(path, exist_ok=True)
    if work_tree is None:
        return Repo.init_bare(path)
    if os.path.abspath(work_tree) == os.path.abspath(path):
        return Repo.init(path)
    repo = Repo.init_bare(path)
    os.makedirs(work_tree, exist_ok=True)
    config = repo.get_config()
    config.set(b"core", b"bare", False)
    config.set(b"core", b"worktree", os.path.abspath(work_tree).encode())
    config.write_to_path()
    repo.close()
    return Repo(path)  # read back as the non-bare repository it now is


class Store:
    """A git repository (in memory or on disk) seen as a DataKit store."""

    def __init__(
        self,
        repo: Any,
        refs: MemoryRefs | DiskRefs,
        objects_dir: str | None,
        *,
        compression: int = LOOSE_COMPRESSION,
        limits: Limits | None = None,
    ) -> None:
        self._repo = repo
        self._db = ObjectDB(repo.object_store, objects_dir, compression=compression, limits=limits)
        self._refs = refs
        self._listeners: list[Listener] = []
        self._known: dict[str, str] | None = None
        self.path: str | None = getattr(refs, "gitdir", None)

    # -- opening -------------------------------------------------------------
    @classmethod
    def memory(cls, limits: Limits | None = None) -> Store:
        from dulwich.repo import MemoryRepo

        return cls(MemoryRepo(), MemoryRefs(), None, limits=limits)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        work_tree: str | os.PathLike[str] | None = None,
        limits: Limits | None = None,
    ) -> Store:
        """Open a bare repository or a repository with a work tree (only its
        git directory is used). Nothing is scanned, so this is O(1) in the
        repository size.

        Where nothing is (a missing or empty directory) and ``create`` is
        set, a repository is made first: bare without ``work_tree``; with
        ``work_tree`` equal to ``path``, a git directory in ``path/.git``
        (``git init``); with another ``work_tree``, a git directory at
        ``path`` for that work tree (``git init --separate-git-dir``). The
        work tree is never written to. Without ``create``, a missing
        repository raises NotFound; anything else there, StoreError."""
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        path = os.fspath(path)
        try:
            repo = Repo(path)
        except (NotGitRepository, FileNotFoundError):
            if not create:
                raise NotFound() from None
            repo = _create(path, None if work_tree is None else os.fspath(work_tree))
        except ValueError as exc:  # dulwich: a config (or .git file) it cannot parse
            raise StoreError(f"{path}: unreadable repository: {exc}") from exc
        gitdir = repo.controldir()
        objects_dir = os.path.join(gitdir, "objects")
        if not os.path.isdir(objects_dir):  # a .git file naming a missing directory
            repo.close()
            raise StoreError(f"{path} is not a git repository (no {objects_dir})")
        try:
            compression = _loose_compression(repo.get_config())
        except ValueError as exc:
            repo.close()
            raise StoreError(f"{path}: unreadable repository config: {exc}") from exc
        # Temporary files (big transaction files, big blobs being read) go
        # next to the repository: same filesystem, sized for its data.
        limits = dataclasses.replace(limits or Limits(), temp_dir=gitdir)
        return cls(repo, DiskRefs(gitdir), objects_dir, compression=compression, limits=limits)

    def set_default_branch(self, ref: str) -> None:
        """Make HEAD designate ``ref`` (``refs/heads/...``): the branch a
        clone checks out."""
        from dulwich.refs import Ref

        self._repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(ref.encode()))

    def set_compression(self, level: int) -> None:
        """Record the zlib level (-1..9) in the repository's config
        (core.compression and core.looseCompression, as git reads them) and
        use it for the objects written from now on."""
        if not -1 <= level <= 9:
            raise ValueError(f"compression level {level} is not in -1..9")
        config = self._repo.get_config()
        for name in (b"compression", b"looseCompression"):
            config.set(b"core", name, str(level).encode())
        config.write_to_path()
        self._db.compression = level

    def checked_out_branch(self) -> str | None:
        """What HEAD names in a repository with a work tree (a branch name,
        else the ref or id HEAD holds); None for a bare or in-memory one."""
        if not self.on_disk or self._repo.bare:
            return None
        from dulwich.refs import Ref

        head = self._repo.refs.read_ref(Ref(b"HEAD")) or b""
        return head.removeprefix(b"ref: refs/heads/").decode("utf-8", "replace")

    def close(self) -> None:
        self._repo.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def on_disk(self) -> bool:
        return isinstance(self._refs, DiskRefs)

    # -- objects -------------------------------------------------------------
    def read_blob(self, sha: str) -> bytes:
        return self._db.blob(sha)

    def blob_size(self, sha: str) -> int:
        return self._db.blob_size(sha)

    def raw_object(self, sha: str) -> tuple[int, bytes] | None:
        """An object's git type number and body, None if absent: what a Git
        server sends. Safe beside the writer thread (see ObjectDB)."""
        if not _is_sha(sha):
            return None
        return self._db.get_raw(sha.lower())

    def content(self, entry: Entry) -> bytes:
        """What a file entry reads as (a gitlink's commit is not in this
        repository: it reads as its id and a newline)."""
        return self._db.file_content(entry.kind, entry.sha)

    def content_size(self, entry: Entry) -> int:
        return self._db.file_size(entry.kind, entry.sha)

    def blob_reader(self, sha: str) -> BlobReader:
        """Range reads of a blob (``.size``, ``.read(offset, count)``) that
        hold no private copy: many opens of one file share one."""
        return self._db.blob_reader(sha)

    def reader(self, entry: Entry) -> BlobReader:
        """Range reads of what a file entry reads as (see :meth:`content`)."""
        return self._db.file_reader(entry.kind, entry.sha)

    @property
    def limits(self) -> Limits:
        return self._db.limits

    def tree(self, sha: str) -> TreeView:
        # Only the type is checked: a corrupt tree fails where it is read.
        if sha != EMPTY_TREE and self._db.object_type(sha) != TREE:
            raise NotFound()
        return TreeView(self._db, sha)

    def empty_tree(self) -> TreeView:
        return TreeView(self._db, EMPTY_TREE)

    def commit_info(self, sha: str) -> CommitInfo:
        if not _is_sha(sha):
            raise NotFound()
        return self._db.commit(sha.lower())

    def has_commit(self, sha: str) -> bool:
        return _is_sha(sha) and self._db.object_type(sha.lower()) == COMMIT

    def object_type(self, sha: str) -> str | None:
        if not _is_sha(sha):
            return None
        t = self._db.object_type(sha.lower())
        if t is None and sha == EMPTY_TREE:
            return "tree"
        return TYPE_NAMES.get(t) if t is not None else None

    def parse_commit_id(self, text: str) -> str:
        """Validate user input naming a commit (spec: invalid-hash / ENOENT)."""
        if len(text) != 40:
            raise InvalidHash(text, f"expected 40 hex digits, got {len(text)} characters")
        if not _HEX.match(text):
            raise InvalidHash(text, "not a hexadecimal string")
        sha = text.lower()
        if self._db.object_type(sha) != COMMIT:
            raise NotFound()
        return sha

    def make_commit(
        self,
        tree_sha: str,
        parents: Iterable[str],
        message: bytes,
        author: bytes = AUTHOR,
        *,
        when: int | None = None,
    ) -> str:
        parents = tuple(parents)
        if tree_sha == EMPTY_TREE:
            self._db.put_tree({})
        elif self._db.object_type(tree_sha) != TREE:
            raise NotFound()
        for p in parents:
            if self._db.object_type(p) != COMMIT:
                raise NotFound()
        if not message:
            message = b"(no commit message)"
        when = int(time.time()) if when is None else when
        raw = serialize_commit(tree_sha, parents, message, author, when)
        sha = self._db.put(COMMIT, raw)
        self._db.commits.put(sha, parse_commit_body(sha, raw))
        return sha

    def persist(self, *shas: str) -> None:
        """Make objects (and all they reference) durable in the repository so
        other processes can use them; set_head does this implicitly."""
        self._db.flush(shas)

    def edit(self, base_tree_sha: str | None) -> EditableTree:
        if base_tree_sha not in (None, EMPTY_TREE) and self._db.object_type(base_tree_sha) != TREE:
            raise NotFound()  # only the type: a corrupt tree fails where it is read
        return EditableTree(self._db, base_tree_sha)

    def diff(self, old_tree_sha: str | None, new_tree_sha: str | None) -> list[Change]:
        return diff_trees(self._db, old_tree_sha or EMPTY_TREE, new_tree_sha or EMPTY_TREE)

    # -- history -------------------------------------------------------------
    def _parents(self, sha: str) -> tuple[str, ...]:
        return self._db.commit(sha).parents

    def lcas(self, a: str, b: str) -> list[str]:
        """Lowest common ancestors (git's paint-down-to-common)."""
        if a == b:
            return [a]
        p1, p2, stale = 1, 2, 4
        flags: dict[str, int] = {a: p1, b: p2}
        seq = 0
        heap: list[tuple[int, int, str]] = []
        for c in (a, b):
            heapq.heappush(heap, (-self._db.commit(c).time, seq, c))
            seq += 1
        found: list[str] = []
        while heap and any(not flags[c] & stale for _, _, c in heap):
            _, _, c = heapq.heappop(heap)
            f = flags[c]
            if f == p1 | p2:
                if c not in found:
                    found.append(c)
                f |= stale
            for p in self._parents(c):
                pf = flags.get(p, 0)
                if pf & f == f:
                    continue
                flags[p] = pf | f
                heapq.heappush(heap, (-self._db.commit(p).time, seq, p))
                seq += 1
        result = [c for c in found if not flags[c] & stale]
        if len(result) > 1:
            result = [c for c in result if not any(o != c and self._reaches(o, c) for o in result)]
        return sorted(result)

    def _reaches(self, start: str, target: str) -> bool:
        seen = {start}
        todo = [start]
        while todo:
            c = todo.pop()
            if c == target:
                return True
            for p in self._parents(c):
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return False

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether ``a`` is ``b`` or one of its ancestors."""
        return a == b or self.lcas(a, b) == [a]

    # -- branches ------------------------------------------------------------
    is_valid_branch_name = staticmethod(is_valid_branch_name)
    check_branch_name = staticmethod(check_branch_name)
    _check_name = check_branch_name

    def branches(self) -> list[str]:
        return sorted(self._refs.read_all())

    def heads(self) -> dict[str, str]:
        """Every branch and its head, read at once (what a Git server advertises)."""
        return dict(self._refs.read_all())

    def head(self, name: str) -> str | None:
        if not is_valid_branch_name(name):
            return None
        return self._refs.read(name)

    def set_head(
        self,
        name: str,
        new: str | None,
        *,
        expected: str | None,
        changes: list[BranchChange] | None = None,
    ) -> bool:
        """Compare-and-swap a branch; False if it was not ``expected``.

        Every operation that moves a branch takes ``changes``: None tells
        the listeners at once; a list collects the changes made instead,
        in order, for the caller to :meth:`announce` where the listeners
        expect them (the server writes in a worker thread, its listeners
        live on the event loop)."""
        self._check_name(name)
        durable: Durable | None = None
        if new is not None:
            if not self.has_commit(new):
                raise NotFound()
            # The objects are written under the ref's lock, once its check
            # passed, and fsynced with the lock file (see DiskRefs.cas).
            durable = functools.partial(self._db.flush, [new])
        try:
            if not self._refs.cas(name, expected, new, durable):
                return False
        except OSError:
            # The ref may have moved before the failure (a directory fsync
            # after the rename): whoever watches the branch must see it.
            if new is not None and self._refs.read(name) == new:
                self._changed(BranchChange(name, new), changes)
            raise
        self._changed(BranchChange(name, new), changes)
        return True

    def delete_branch(self, name: str, *, changes: list[BranchChange] | None = None) -> None:
        if not is_valid_branch_name(name):
            return
        while True:
            h = self.head(name)
            if h is None or self.set_head(name, None, expected=h, changes=changes):
                return

    def rename_branch(
        self, old: str, new: str, *, changes: list[BranchChange] | None = None
    ) -> None:
        self._check_name(new)
        if old == new:
            return
        if self.head(new) is not None:
            raise IsADirectory()
        while True:
            h = self.head(old)
            if h is None:
                return
            if not self.set_head(new, h, expected=None, changes=changes):
                raise IsADirectory()
            if self.set_head(old, None, expected=h, changes=changes):
                return
            # old moved meanwhile: undo and retry with its new head
            self.set_head(new, None, expected=h, changes=changes)

    def fast_forward(
        self, name: str, commit: str, *, changes: list[BranchChange] | None = None
    ) -> None:
        self._check_name(name)
        if not self.has_commit(commit):
            raise NotFound()
        commit = commit.lower()
        h = self.head(name)
        if h == commit:
            return
        if h is not None and not self.is_ancestor(h, commit):
            raise NotFastForward()
        if not self.set_head(name, commit, expected=h, changes=changes):
            raise NotFastForward()

    def integrate(
        self, branch: str, commit: str, *, changes: list[BranchChange] | None = None
    ) -> str:
        """Move ``branch`` to include ``commit`` (spec 3.5 step 4); the new
        head. See :func:`._transaction.integrate`, which also says whether
        it made a merge commit."""
        return integrate(self, branch, commit, changes=changes).head

    # -- change notification -------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        if self._known is None:
            self._known = self._refs.read_all()
            self._refs.changed_since_last_check()
        self._listeners.append(fn)

    def announce(self, changes: Iterable[BranchChange]) -> None:
        """Tell the listeners of changes a write collected (see :meth:`set_head`)."""
        for change in changes:
            self._tell(change)

    def _changed(self, change: BranchChange, sink: list[BranchChange] | None) -> None:
        if sink is not None:
            sink.append(change)
        else:
            self._tell(change)

    def _tell(self, change: BranchChange) -> None:
        name, new = change
        if self._known is not None:
            if new is None:
                self._known.pop(name, None)
            else:
                self._known[name] = new
        for fn in list(self._listeners):
            try:
                fn(name, new)
            except Exception:
                log.exception("branch listener failed")

    def poll(self) -> None:
        """Notice branch changes made by other processes (cheap when none)."""
        if self._known is None:
            self._known = self._refs.read_all()
            self._refs.changed_since_last_check()
            return
        if not self._refs.changed_since_last_check():
            return
        current = self._refs.read_all()
        old = self._known
        self._known = dict(current)
        for name in sorted(old.keys() | current.keys()):
            if old.get(name) != current.get(name):
                self._tell(BranchChange(name, current.get(name)))

    # -- remotes -------------------------------------------------------------
    def _graph_walker(self) -> Any:
        """What a fetch tells the remote we have: our branch heads, then
        their ancestors, at most MAX_HAVES in all, from our own refs and
        parsed-commit cache. dulwich's own walker read its repository's
        refs, which for a memory store are not ours (every fetch asked for
        the whole history), and offered every commit we have: its protocol
        v2 client sends them all in one round, and the remote acknowledges
        each (half a megabyte per fetch of a 10,000-commit history)."""
        from dulwich.object_store import ObjectStoreGraphWalker

        heads = [sha.encode("ascii") for sha in self._refs.read_all().values()]

        def parents(sha: bytes) -> list[bytes]:
            try:
                return [p.encode("ascii") for p in self._db.commit(sha.decode("ascii")).parents]
            except NotFound:
                return []

        class Bounded(ObjectStoreGraphWalker):
            offered = 0

            def next(self) -> Any:
                if self.offered >= MAX_HAVES:
                    return None
                self.offered += 1
                return super().next()

            __next__ = next

        return Bounded(heads, parents)  # type: ignore[arg-type]

    def fetch(
        self,
        url: str,
        branch: str,
        *,
        policy: RemotePolicy | None = None,
        guard: FetchGuard | None = None,
    ) -> str:
        """Fetch ``refs/heads/<branch>`` of ``url`` into the object store,
        checked before anything of it is stored (see ``_fetch``).

        ``policy`` says which URLs are allowed and the timeouts (default:
        git, http and https only); a ``guard`` made by the caller (with its
        own policy) lets another thread cancel the fetch."""
        url = url.strip()
        if not url:
            raise FetchError("error: remote url is not defined")
        from ._fetch import receive
        from ._packs import install_pack

        guard = guard or FetchGuard(policy or RemotePolicy())
        pack_dir = os.path.join(self._db.objects_dir, "pack") if self._db.objects_dir else None
        with guard.watching():
            received = receive(
                url,
                branch,
                guard,
                object_type=self._db.object_type,
                get_raw=self._db.get_raw,
                graph_walker=self._graph_walker(),
                pack_dir=pack_dir,
            )
        if received.pack is not None and pack_dir is not None:
            install_pack(pack_dir, received.pack, received.index, received.checksum)
        elif received.pack is not None:
            # Into the overlay, which in memory is the storage: dulwich's
            # memory store would parse each object again on every read (a
            # third of the time of a clone served from a fetched history).
            try:
                for _sha, t, raw in received.read_objects():
                    self._db.put(t, raw)
            finally:
                received.discard()
        if self._db.object_type(received.head) != COMMIT:
            raise FetchError(f"error: cannot fetch {shown_url(url)}")
        return received.head

    # -- pushes --------------------------------------------------------------
    def receive_pack(
        self,
        recv: Callable[[int], bytes],
        *,
        max_pack: int,
        max_object: int,
        keep: bool = True,
        alive: Callable[[], None] = lambda: None,
    ) -> int:
        """Read the pack a `git push` sends through ``recv`` (up to its end:
        the client sends nothing after it), check it and store its objects;
        the number of objects it held. Nothing is stored unless all of it
        passes (see ``_receive``): a PushRefused says why not. Without
        ``keep`` the pack is read (the client sends it anyway) and dropped.

        Objects are installed as a fetch installs them: on disk the pack
        itself, with our index, once complete; in memory its objects. No
        branch moves here: that is ``set_head``'s, through the writer."""
        import tempfile

        from ._durable import datasync, new_temporary
        from ._fsck import FsckError
        from ._packs import install_pack
        from ._receive import (
            PushRefused,
            ReceivedPack,
            Refused,
            check_all_links,
            check_pack,
            complete_pack,
            read_pack_stream,
        )

        pack_dir = os.path.join(self._db.objects_dir, "pack") if self._db.objects_dir else None
        if pack_dir is not None:
            os.makedirs(pack_dir, exist_ok=True)
            fd, tmp = new_temporary(pack_dir, "push")
        else:
            fd, tmp = tempfile.mkstemp(prefix="datakit-push-", dir=self._db.limits.temp_dir)
        received = ReceivedPack(pack=tmp)
        try:
            try:
                count = read_pack_stream(
                    recv, fd, max_pack=max_pack, max_object=max_object, alive=alive
                )
                if keep and count and pack_dir is not None:
                    datasync(fd)
            finally:
                os.close(fd)
            if not keep or not count:
                return count
            try:
                contents = check_pack(
                    received, self._db.get_raw, max_object, alive, sizes_checked=True
                )
                check_all_links(contents, self._db.object_type)
                complete_pack(received, contents.external, self._db.get_raw)
            except (Refused, FsckError) as exc:
                raise PushRefused(str(exc)) from exc
            if pack_dir is not None:
                install_pack(pack_dir, tmp, received.index, received.checksum)
                received.pack = None  # moved into place
            else:
                # Into the overlay, as a fetch does (see fetch).
                for _sha, t, raw in received.read_objects():
                    self._db.put(t, raw)
            return count
        finally:
            received.discard()
