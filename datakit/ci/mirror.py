"""A project's bare mirror of its source repository, and fresh checkouts of
exact commits for jobs (spec ci.md B.4).

The mirror lives at ``<workdir>/mirrors/<user>-<repo>.git`` (each part
escaped as history branch names are) and only ever receives refs under
``refs/ci/``: the commit of every tested SHA is pinned there
(``refs/ci/commits/<sha>``, so git's garbage collection keeps it), and the
fallback fetches go to ``refs/ci/heads/*``, ``refs/ci/tags/*`` and
``refs/ci/pull/<n>/head``. Nothing is fetched into branches or real tags
(upstream #415: temporary tags in the user's namespace leaked).

A commit is fetched by its SHA first (git's protocol v2 allows any object;
so do local paths); a server that refuses unadvertised objects (protocol
v0 without ``uploadpack.allowAnySHA1InWant``) gets the target's own ref,
then every head and tag. A source that has vanished or lacks the commit is a
:class:`SourceError` with one line that says which.

A checkout is a new repository whose ``objects/info/alternates`` points at
the mirror's objects, with the commit checked out detached: nothing is
written to the mirror, so any number of checkouts can be made at once while
a fetch runs, and the job gets a real ``.git`` (``git log`` works). It is
deleted when the ``async with`` ends, whatever happened, cancellation
included. (The runner mounts the alternates' directory read-only into a
podman container so git works in there too.)

Every git call is a subprocess with a timeout; a git that hangs (a network
source, a credentials prompt) cannot hold a job forever.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from datakit.ci.model import TargetId
from datakit.ci.naming import escape
from datakit.github.model import PRId, RefId, Repo

log = logging.getLogger("datakit.ci.mirror")

FETCH_TIMEOUT = 600.0  # seconds for one `git fetch`
LOCAL_TIMEOUT = 300.0  # seconds for a local git command (init, checkout of a big tree)
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# Environment variables that would point git at another repository.
_GIT_REDIRECTS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
)


class SourceError(Exception):
    """The source repository cannot give us the commit; ``str()`` is one
    line fit for a job's status description and the log."""


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_REDIRECTS}
    env["GIT_TERMINAL_PROMPT"] = "0"  # a password prompt would hang the fetch
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    env["LC_ALL"] = "C"  # error messages we quote are in English
    return env


def _last_line(text: bytes) -> str:
    lines = [ln.strip() for ln in text.decode(errors="replace").splitlines() if ln.strip()]
    # git prefixes its own errors with "fatal:"/"error:"; prefer those.
    for line in reversed(lines):
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "(no message)"


async def git(
    *args: str, cwd: Path | None = None, timeout: float = LOCAL_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS``; the completed process whatever its exit status. A
    timeout is a SourceError (the process is killed by trio)."""
    try:
        with trio.fail_after(timeout):
            return await trio.run_process(
                ["git", *args],
                cwd=cwd,
                env=_git_env(),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    except trio.TooSlowError:
        raise SourceError(f"git {args[0]} timed out after {timeout:g} s") from None


def _remove_tree(path: Path) -> None:
    """rmtree that also removes what a job made read-only."""

    def retry(func: Callable[..., Any], name: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, stat.S_IRWXU)
            func(name)
        except FileNotFoundError:
            pass

    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=retry)


class Mirror:
    """One project's bare mirror under ``<workdir>/mirrors/``.

    The engine keeps one Mirror per project: its :meth:`ensure` calls are
    serialised by the instance's lock (two fetches into one repository could
    fail on each other's ref locks); checkouts need no lock.
    """

    def __init__(self, workdir: Path, repo: Repo, source: str) -> None:
        self.workdir = Path(workdir)
        self.repo = repo
        self.source = source
        name = f"{escape(repo.user)}-{escape(repo.name)}"
        self.path = self.workdir / "mirrors" / f"{name}.git"
        self.checkouts = self.workdir / "checkouts"
        self._name = name
        self._lock = trio.Lock()

    def __repr__(self) -> str:
        return f"Mirror({self.repo}, {self.source!r})"

    # --- fetching -------------------------------------------------------------

    async def has_commit(self, sha: str) -> bool:
        if not self.path.is_dir():
            return False
        result = await git("cat-file", "-e", f"{sha}^{{commit}}", cwd=self.path)
        return result.returncode == 0

    async def ensure(self, sha: str, ident: TargetId | None = None) -> None:
        """Make sure the mirror has commit ``sha`` (``ident``, the target it
        is the head of, says which refs to try when the source will not
        give a commit by its id). SourceError if it cannot."""
        if not _SHA.fullmatch(sha):
            raise SourceError(f"not a commit id: {sha!r}")
        if await self._pinned(sha) and await self.has_commit(sha):
            return  # the usual case once fetched: no need to wait for a fetch
        async with self._lock:
            if await self.has_commit(sha):
                await self._pin(sha)
                return
            await self._create()
            fetched = await self._fetch([f"+{sha}:refs/ci/commits/{sha}"])
            if fetched is None and await self.has_commit(sha):
                return
            log.info("%s: fetching %s by id failed (%s); fetching refs", self, sha[:12], fetched)
            for refspecs in self._fallbacks(ident):
                await self._fetch(refspecs)
                if await self.has_commit(sha):
                    await self._pin(sha)
                    return
            if not await self._source_readable():
                raise SourceError(f"source {self.source} cannot be read: {fetched}")
            raise SourceError(f"commit {sha} is not in source {self.source}")

    def _fallbacks(self, ident: TargetId | None) -> list[list[str]]:
        """Refspecs to try in turn when a fetch by id did not bring the commit."""
        tries: list[list[str]] = []
        if isinstance(ident, PRId):
            n = ident.number
            tries.append([f"+refs/pull/{n}/head:refs/ci/pull/{n}/head"])
        elif isinstance(ident, RefId) and ident.name:
            name = "/".join(ident.name)
            tries.append([f"+refs/{name}:refs/ci/{name}"])
        tries.append(["+refs/heads/*:refs/ci/heads/*", "+refs/tags/*:refs/ci/tags/*"])
        return tries

    async def _fetch(self, refspecs: list[str]) -> str | None:
        """``git fetch SOURCE REFSPECS``; None, or git's error line."""
        result = await git(
            "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--",
            self.source, *refspecs,
            cwd=self.path,
            timeout=FETCH_TIMEOUT,
        )  # fmt: skip
        if result.returncode == 0:
            return None
        return _last_line(result.stderr)

    async def _source_readable(self) -> bool:
        result = await git("ls-remote", "--heads", "--", self.source, timeout=FETCH_TIMEOUT)
        return result.returncode == 0

    async def _pinned(self, sha: str) -> bool:
        if not self.path.is_dir():
            return False
        ref = f"refs/ci/commits/{sha}"
        result = await git("rev-parse", "--verify", "--quiet", ref, cwd=self.path)
        return result.returncode == 0

    async def _pin(self, sha: str) -> None:
        """Keep ``sha`` reachable (from ``refs/ci/commits/<sha>``), so git gc
        never drops a commit a later checkout may want."""
        if not await self._pinned(sha):
            result = await git("update-ref", f"refs/ci/commits/{sha}", sha, cwd=self.path)
            if result.returncode != 0:
                log.warning("%s: cannot pin %s: %s", self, sha, _last_line(result.stderr))

    async def _create(self) -> None:
        """The bare repository, made in a temporary folder and renamed into
        place, so a crash never leaves a half-made mirror."""
        if self.path.is_dir():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            for args in (
                ("init", "--quiet", "--bare", "--template=", str(tmp)),
                # gc may run after a fetch: in the foreground (no process
                # outliving the fetch), keeping everything pinned.
                ("-C", str(tmp), "config", "gc.autoDetach", "false"),
            ):
                result = await git(*args)
                if result.returncode != 0:
                    why = _last_line(result.stderr)
                    raise SourceError(f"cannot create mirror {self.path}: {why}")
            tmp.rename(self.path)
        finally:
            if tmp.exists():
                await trio.to_thread.run_sync(_remove_tree, tmp)

    # --- checkouts --------------------------------------------------------------

    def checkout(self, sha: str) -> AbstractAsyncContextManager[Path]:
        """``async with mirror.checkout(sha) as path``: a fresh directory
        holding exactly commit ``sha`` (HEAD detached at it), removed
        afterwards whatever happens. Call :meth:`ensure` first."""
        return self._checkout(sha)

    @asynccontextmanager
    async def _checkout(self, sha: str) -> AsyncIterator[Path]:
        if not _SHA.fullmatch(sha):
            raise SourceError(f"not a commit id: {sha!r}")
        self.checkouts.mkdir(parents=True, exist_ok=True)
        path = self.checkouts / f"{self._name}-{sha[:12]}-{secrets.token_hex(4)}"
        try:
            await self._populate(path, sha)
            yield path
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_remove_tree, path)

    async def _populate(self, path: Path, sha: str) -> None:
        result = await git("init", "--quiet", "--template=", str(path))
        if result.returncode != 0:
            raise SourceError(f"cannot make a checkout: {_last_line(result.stderr)}")
        alternates = path / ".git" / "objects" / "info" / "alternates"
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(f"{(self.path / 'objects').resolve()}\n")
        result = await git(
            "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha, "--",
            cwd=path,
        )  # fmt: skip
        if result.returncode != 0:
            raise SourceError(f"cannot check out {sha}: {_last_line(result.stderr)}")


def remove_stale_checkouts(workdir: Path) -> int:
    """Delete checkouts left by a CI process that was killed (``kill -9``
    skips the ``finally``); call at start, before any job runs. Returns how
    many were removed."""
    folder = Path(workdir) / "checkouts"
    if not folder.is_dir():
        return 0
    count = 0
    for entry in folder.iterdir():
        _remove_tree(entry)
        count += 1
    return count


__all__ = ["Mirror", "SourceError", "git", "remove_stale_checkouts"]
