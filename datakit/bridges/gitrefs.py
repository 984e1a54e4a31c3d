"""Reading a Git repository's refs without ever writing to it, and noticing
when they change.

Refs are read with ``git for-each-ref`` (one process per read, a few
milliseconds) rather than dulwich: git reads every ref storage it supports
(loose, packed, reftable) exactly as git itself does, writes nothing when
asked to read (``GIT_OPTIONAL_LOCKS=0`` even rules out opportunistic
index refreshes), and needs no write access, so a read-only mount works
(upstream #622 failed there creating ``.git/tmp``). Annotated tags are
peeled with the ``%(*objectname)`` field, and tags of tags (rare) with one
``git cat-file --batch-check`` on ``SHA^{}``.

Changes are noticed with inotify (the small ``inotify_simple`` wrapper,
driven by trio's ``wait_readable``) on ``refs/`` (recursively, for branch
names with ``/``), ``packed-refs`` and ``reftable/``; where inotify is not
available, by polling.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import trio

log = logging.getLogger("datakit.bridges.gitrefs")

RefName = tuple[str, ...]  # ("heads", "feature", "x") for refs/heads/feature/x
GIT_ENV = {
    "GIT_OPTIONAL_LOCKS": "0",  # never take the index lock to refresh it
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


class NotARepository(Exception):
    """The path given is not a Git repository we can read."""


def find_git_dir(path: str | os.PathLike[str]) -> Path:
    """The Git directory of a repository with a work tree (``PATH/.git``, a
    directory or a ``gitdir:`` file) or of a bare one (``PATH`` itself)."""
    root = Path(path)
    if not root.is_dir():
        raise NotARepository(f"{path}: not a directory")
    dotgit = root / ".git"
    if dotgit.is_dir():
        git_dir = dotgit
    elif dotgit.is_file():
        text = dotgit.read_text(errors="replace").strip()
        if not text.startswith("gitdir:"):
            raise NotARepository(f"{path}: .git is a file that names no Git directory")
        git_dir = (root / text[len("gitdir:") :].strip()).resolve()
    elif (root / "HEAD").is_file() and (root / "objects").is_dir():
        git_dir = root
    else:
        raise NotARepository(f"{path}: not a Git repository (no .git, and not a bare repository)")
    if not (git_dir / "HEAD").is_file():
        raise NotARepository(f"{path}: not a Git repository ({git_dir}/HEAD missing)")
    return git_dir


def common_dir(git_dir: Path) -> Path:
    """Where the refs live: a linked work tree's Git directory
    (``.git/worktrees/<name>``) names the main one in ``commondir``."""
    try:
        text = (git_dir / "commondir").read_text().strip()
    except OSError:
        return git_dir
    return (git_dir / text).resolve() if text else git_dir


def _git(git_dir: Path, *args: str, input: bytes | None = None) -> bytes:
    # No GIT_* of whoever started us (a hook sets GIT_COMMON_DIR,
    # GIT_OBJECT_DIRECTORY, ...): they would point git at another repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_ENV, GIT_DIR=str(git_dir))
    result = subprocess.run(
        ["git", "-c", "safe.directory=*", *args],
        input=input,
        capture_output=True,
        env=env,
        cwd="/",
        check=False,
    )
    if result.returncode != 0:
        reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NotARepository(f"{git_dir}: git {args[0]} failed: {reason[-1] if reason else '?'}")
    return result.stdout


_FORMAT = "%(refname)%00%(objectname)%00%(objecttype)%00%(*objectname)%00%(*objecttype)"


def read_refs(git_dir: Path, tags: bool = False) -> dict[RefName, str]:
    """``{("heads", "master"): sha, ...}``: every branch, and with ``tags``
    every tag that leads to a commit (annotated tags peeled to it; tags of
    trees or blobs left out). Blocking: call it in a thread."""
    patterns = ["refs/heads/", *(["refs/tags/"] if tags else [])]
    out = _git(git_dir, "for-each-ref", f"--format={_FORMAT}", *patterns)
    refs: dict[RefName, str] = {}
    nested: dict[RefName, str] = {}  # tags of tags: peeled below
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split("\0")
        if len(fields) != 5:
            continue
        refname, sha, kind, peeled, peeled_kind = fields
        name = tuple(refname.split("/")[1:])
        if kind == "commit":
            refs[name] = sha
        elif kind == "tag" and peeled_kind == "commit":
            refs[name] = peeled
        elif kind == "tag" and peeled_kind == "tag":
            nested[name] = sha
    if nested:
        names = list(nested)
        query = "".join(f"{nested[n]}^{{}}\n" for n in names).encode()
        answer = _git(git_dir, "cat-file", "--batch-check=%(objectname) %(objecttype)", input=query)
        for name, line in zip(names, answer.decode().splitlines(), strict=False):
            sha, _, kind = line.partition(" ")
            if kind == "commit":
                refs[name] = sha
    return refs


# --- watching -----------------------------------------------------------------

try:
    import inotify_simple as _inotify
except ImportError:  # not on Linux, or not installed: polling only
    _inotify = None  # type: ignore[assignment]


class RefWatcher:
    """Yields once per burst of changes to a repository's refs.

    With inotify: watches on the Git directory (``packed-refs``, ``HEAD``,
    ``reftable``), on ``refs/`` and every directory below it (added as they
    appear, so ``refs/heads/feature/`` is seen). A periodic tick is still
    yielded every ``safety_interval`` seconds (None: never) in case an
    event is lost (queue overflow). Without inotify: a tick every
    ``poll_interval`` seconds. The caller re-reads the refs on each yield
    and compares; a yield that finds nothing new is cheap.
    """

    MASK_NAMES = ("CREATE", "MOVED_TO", "MOVED_FROM", "DELETE", "CLOSE_WRITE", "DELETE_SELF")

    def __init__(
        self,
        git_dir: Path,
        *,
        use_inotify: bool = True,
        poll_interval: float = 1.0,
        safety_interval: float | None = 60.0,
        settle: float = 0.01,
    ) -> None:
        self.git_dir = common_dir(git_dir)
        self.poll_interval = poll_interval
        self.safety_interval = safety_interval
        self.settle = settle
        self._inotify = None
        self._dirs: dict[int, Path] = {}
        if use_inotify and _inotify is not None:
            try:
                self._inotify = _inotify.INotify(nonblocking=True)
            except OSError as exc:
                log.info("inotify unavailable (%s): polling %s", exc, git_dir)

    @property
    def uses_inotify(self) -> bool:
        return self._inotify is not None

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def _mask(self) -> int:
        assert _inotify is not None
        mask = 0
        for name in self.MASK_NAMES:
            mask |= int(getattr(_inotify.flags, name))
        return mask

    def _add(self, path: Path) -> None:
        assert self._inotify is not None
        try:
            wd = self._inotify.add_watch(path, self._mask())
        except OSError as exc:  # vanished meanwhile, or out of watches
            log.debug("cannot watch %s: %s", path, exc)
            return
        self._dirs[wd] = path

    def _add_tree(self, top: Path) -> None:
        if not top.is_dir():
            return
        self._add(top)
        for dirpath, dirnames, _ in os.walk(top):
            for d in dirnames:
                self._add(Path(dirpath) / d)

    def start(self) -> None:
        """Set the watches up now (before the first read of the refs, so a
        change between that read and the first wait is not missed)."""
        if self._inotify is not None and not self._dirs:
            self._start()

    def _start(self) -> None:
        self._add(self.git_dir)
        self._add_tree(self.git_dir / "refs")
        self._add_tree(self.git_dir / "reftable")

    def _interesting(self, events: list[object]) -> bool:
        """Note new directories to watch; whether any event may be a ref change."""
        assert _inotify is not None
        flags = _inotify.flags
        changed = False
        for ev in events:
            wd, mask, name = ev.wd, ev.mask, ev.name  # type: ignore[attr-defined]
            where = self._dirs.get(wd)
            if mask & flags.Q_OVERFLOW:
                return True
            if mask & flags.IGNORED:
                self._dirs.pop(wd, None)
                continue
            if where is None or name.endswith(".lock"):
                continue
            if where == self.git_dir:
                if name in ("refs", "reftable") and mask & flags.ISDIR:
                    self._add_tree(where / name)
                    changed = True
                elif name in ("packed-refs", "HEAD"):
                    changed = True
                continue
            if mask & flags.ISDIR and mask & (flags.CREATE | flags.MOVED_TO):
                self._add_tree(where / name)
            changed = True
        return changed

    async def wait(self) -> None:
        """Return when the refs may have changed (or at a periodic tick)."""
        if self._inotify is None:
            await trio.sleep(self.poll_interval)
            return
        if not self._dirs:
            self._start()
        fd = self._inotify.fileno()
        while True:
            timeout = self.safety_interval if self.safety_interval is not None else float("inf")
            if not self._dirs:
                # Nothing to watch (the repository is gone for now, being
                # re-cloned or remounted): look again soon, not at the tick.
                timeout = min(timeout, self.poll_interval)
            with trio.move_on_after(timeout) as scope:
                await trio.lowlevel.wait_readable(fd)
            if scope.cancelled_caught:
                return
            await trio.sleep(self.settle)  # let a burst (lock, rename, unlink) arrive whole
            if self._interesting(list(self._inotify.read(timeout=0))):
                return
