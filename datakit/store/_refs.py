"""Branch refs with compare-and-swap, in memory or in a git directory.

The on-disk protocol is git's: ``refs/heads/<b>.lock`` is created with
O_EXCL, the current value is checked under the lock, the new value is written
to the lock file, fsynced and renamed over the ref, and the directory is
fsynced. Lock files left behind by a crashed process are removed once they
are older than ``STALE_LOCK_SECONDS``; a live competitor is waited for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from collections.abc import Callable, Sequence

from ._durable import fsync_dir, write_all
from ._errors import InvalidBranchName, NameTooLong, StoreError

Durable = Callable[[Sequence[int]], None]
"""Makes the data of the given file descriptors durable, together with
whatever else it writes (the objects a new ref names: see DiskRefs.cas)."""

_NAME_CHARS = re.compile(r"[A-Za-z0-9/_.\-]+\Z")
_HEX40 = re.compile(r"[0-9a-f]{40}\Z")

STALE_LOCK_SECONDS = 5.0
LOCK_WAIT_SECONDS = 2 * STALE_LOCK_SECONDS


#: A loose ref holds 41 bytes (a symbolic one a path): more is not a ref.
LOOSE_REF_MAX = 4096


def _read_regular(path: str, limit: int | None = None) -> bytes | None:
    """The content of the regular file at `path`; None if it is something
    else (a FIFO, whose open would block until a writer comes, a device such
    as /dev/zero, which never ends) or longer than `limit`. Missing: raises."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if limit is not None and info.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read() if limit is None else f.read(limit + 1)
    finally:
        os.close(fd)


# A loose ref is the file refs/heads/<name>, locked by creating <name>.lock:
# each component needs room for that suffix within NAME_MAX (255 bytes). The
# whole name is bounded too, so the ref's path fits in PATH_MAX (4,096) with
# the repository's own path. Memory stores apply the same limits, so a name
# works on both kinds of store or on neither.
BRANCH_COMPONENT_MAX = 255 - len(".lock")
BRANCH_NAME_MAX = 2048


def _branch_name_problem(name: str) -> str | None:
    """DataKit's character set, intersected with what ``git check-ref-format
    --branch`` accepts."""
    if not name or not _NAME_CHARS.match(name):
        return "invalid"
    if name.startswith("-") or name == "HEAD":
        return "invalid"
    if ".." in name or name.endswith(".") or name.endswith("/") or name.startswith("/"):
        return "invalid"
    for part in name.split("/"):
        if not part or part.startswith(".") or part.endswith(".lock"):
            return "invalid"
    if len(name) > BRANCH_NAME_MAX or any(
        len(part) > BRANCH_COMPONENT_MAX for part in name.split("/")
    ):
        return "too long"
    return None


def check_branch_name(name: str) -> None:
    """InvalidBranchName (EINVAL) or NameTooLong (ENAMETOOLONG) unless
    ``name`` may name a branch."""
    problem = _branch_name_problem(name)
    if problem == "too long":
        raise NameTooLong(
            f"Branch name too long ({len(name)} bytes; at most {BRANCH_COMPONENT_MAX}"
            f" between slashes, {BRANCH_NAME_MAX} in all)"
        )
    if problem is not None:
        raise InvalidBranchName(name)


def is_valid_branch_name(name: str) -> bool:
    return _branch_name_problem(name) is None


class MemoryRefs:
    def __init__(self) -> None:
        self.heads: dict[str, str] = {}

    def read_all(self) -> dict[str, str]:
        return dict(self.heads)

    def read(self, name: str) -> str | None:
        return self.heads.get(name)

    def cas(
        self, name: str, expected: str | None, new: str | None, durable: Durable | None = None
    ) -> bool:
        if self.heads.get(name) != expected:
            return False
        if new is None:
            self.heads.pop(name, None)
        else:
            if durable is not None:
                durable(())
            self.heads[name] = new
        return True

    def changed_since_last_check(self) -> bool:
        return False


class _Lock:
    """A git-style ``<path>.lock`` file held open for writing."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self.fd = -1

    def acquire(self) -> None:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.0005
        while True:
            try:
                self.fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                return
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
                continue
            try:
                age = time.time() - os.stat(self.lock_path).st_mtime
            except FileNotFoundError:
                continue
            if age > STALE_LOCK_SECONDS:
                # Left by a crashed writer: git would block forever, we don't.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lock_path)
                continue
            if time.monotonic() > deadline:
                raise StoreError(f"cannot lock ref {self.path}")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def commit(self, data: bytes, durable: Durable | None = None) -> None:
        """Write ``data``, make it durable (with ``durable``, which may do
        more at the same time, or by an fsync), rename the lock over the
        file and fsync the directory."""
        write_all(self.fd, data)
        if durable is None:
            os.fsync(self.fd)
        else:
            durable([self.fd])
        os.close(self.fd)
        self.fd = -1
        os.replace(self.lock_path, self.path)
        fsync_dir(os.path.dirname(self.path))

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path)


class DiskRefs:
    """``refs/heads/*`` of a git directory (loose refs and ``packed-refs``)."""

    def __init__(self, gitdir: str) -> None:
        self.gitdir = gitdir
        self.heads_dir = os.path.join(gitdir, "refs", "heads")
        self.packed_path = os.path.join(gitdir, "packed-refs")
        # (stat key, parsed heads) in one attribute, so a reader on another
        # thread never pairs a new key with old contents.
        self._packed: tuple[tuple[int, int, int] | None, dict[str, str]] = (None, {})
        self._stamps: dict[str, tuple[int, int]] | None = None

    # -- reading -----------------------------------------------------------
    def _packed_refs(self) -> dict[str, str]:
        try:
            st = os.stat(self.packed_path)
        except FileNotFoundError:
            self._packed = (None, {})
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached_key, cached = self._packed
        if key == cached_key and time.time() - st.st_mtime > 2:
            return cached
        packed: dict[str, str] = {}
        content = _read_regular(self.packed_path) or b""  # not a file: no packed refs
        for line in content.splitlines():
            if line.startswith((b"#", b"^")):
                continue
            sha, _, ref = line.partition(b" ")
            if ref.startswith(b"refs/heads/"):
                packed[ref[11:].decode("utf-8", "surrogateescape")] = sha.decode()
        self._packed = (key, packed)
        return packed

    def _read_loose(self, name: str) -> str | bool | None:
        """The loose ref value; ``False`` if there is no loose ref."""
        try:
            content = _read_regular(os.path.join(self.heads_dir, name), LOOSE_REF_MAX)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:  # a repository path near PATH_MAX
                return False
            raise
        if content is None or len(content) > LOOSE_REF_MAX:
            return None  # not a ref: no branch
        text = content.strip().decode("ascii", "replace")
        return text if _HEX40.match(text) else None

    def read(self, name: str) -> str | None:
        loose = self._read_loose(name)
        if loose is not False:
            return loose  # type: ignore[return-value]
        return self._packed_refs().get(name)

    def read_all(self) -> dict[str, str]:
        heads = dict(self._packed_refs())
        for dirpath, _dirnames, filenames in os.walk(self.heads_dir):
            rel = os.path.relpath(dirpath, self.heads_dir)
            for fn in filenames:
                if fn.endswith(".lock"):
                    continue
                name = fn if rel == "." else f"{rel}/{fn}".replace(os.sep, "/")
                value = self._read_loose(name)
                if isinstance(value, str):
                    heads[name] = value
        return heads

    def changed_since_last_check(self) -> bool:
        """Cheap test (a few stats) of whether any branch may have changed."""
        stamps: dict[str, tuple[int, int]] = {}
        now = time.time()
        recent = False
        try:
            st = os.stat(self.packed_path)
            stamps[self.packed_path] = (st.st_ino, st.st_mtime_ns)
            recent |= now - st.st_mtime < 2
        except FileNotFoundError:
            pass
        if self._stamps is None:
            todo = [self.heads_dir]
        else:
            todo = [p for p in self._stamps if p != self.packed_path]
        seen: set[str] = set()
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            try:
                st = os.stat(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            stamp = (st.st_ino, st.st_mtime_ns)
            stamps[d] = stamp
            recent |= now - st.st_mtime < 2
            if self._stamps is None or self._stamps.get(d) != stamp:
                # New or changed directory: rescan for subdirectories.
                with contextlib.suppress(OSError), os.scandir(d) as it:
                    todo.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
        changed = stamps != self._stamps or recent
        # A timestamp within the last 2 s may hide a second change in the same
        # clock tick: keep rescanning until it is old enough to trust.
        self._stamps = stamps
        return changed

    # -- writing -----------------------------------------------------------
    def cas(
        self, name: str, expected: str | None, new: str | None, durable: Durable | None = None
    ) -> bool:
        """Set ``name`` to ``new`` (None: delete it) if it is ``expected``.

        ``durable`` (when setting): called under the lock once the check
        passed, with the lock file's descriptor, to write the objects the new
        value names and make them durable with the lock file's data in the
        same round of fsyncs: one round of disk waits less per commit, and
        no object is written for a compare-and-swap that fails. The rename
        that publishes the ref comes after it returns."""
        path = os.path.join(self.heads_dir, name)
        lock = _Lock(path)
        try:
            lock.acquire()
        except NotADirectoryError as e:  # a prefix of the name is a branch
            raise StoreError(f"cannot lock ref {name}: a parent ref exists") from e
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:  # the repository's path is long too
                raise NameTooLong(f"cannot lock ref {name}: {e.strerror}") from e
            raise
        try:
            if self.read(name) != expected:
                return False
            if new is not None:
                if os.path.isdir(path):
                    raise StoreError(f"cannot create ref {name}: a ref exists below it")
                lock.commit(new.encode("ascii") + b"\n", durable)
                return True
            if name in self._packed_refs():
                self._remove_packed(name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            fsync_dir(os.path.dirname(path))
            self._prune_dirs(os.path.dirname(path))
            return True
        finally:
            lock.release()

    def _remove_packed(self, name: str) -> None:
        lock = _Lock(self.packed_path)
        lock.acquire()
        try:
            with open(self.packed_path, "rb") as f:
                lines = f.readlines()
            target = b" refs/heads/" + name.encode("utf-8", "surrogateescape") + b"\n"
            out: list[bytes] = []
            skip_peeled = False
            for line in lines:
                if skip_peeled and line.startswith(b"^"):
                    continue
                skip_peeled = line.endswith(target) and not line.startswith(b"#")
                if not skip_peeled:
                    out.append(line)
            lock.commit(b"".join(out))
            self._packed = (None, {})
        finally:
            lock.release()

    def _prune_dirs(self, d: str) -> None:
        while os.path.normpath(d) != os.path.normpath(self.heads_dir):
            try:
                os.rmdir(d)
            except OSError:
                return
            d = os.path.dirname(d)
