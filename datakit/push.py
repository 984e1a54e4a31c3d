"""`--auto-push URL`: replicate every branch update to a Git remote.

Updates are coalesced: a burst of commits becomes one `git push` of every
branch that changed.  Pushing runs in a child process so it never blocks
commits; a failed push is retried with exponential backoff, and the branches
it carried stay queued (upstream dropped them). A push that has not finished
within its timeout (a remote that accepts and never answers) is killed and
retried like a failed one, so one dead remote never stops later pushes. git
never prompts (no terminal, no stdin), and the URL's password is kept out of
the log, as is git's own output that may echo it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from urllib.parse import urlsplit

import trio

from datakit import metrics
from datakit.store import Store, shown_url

log = logging.getLogger("datakit.push")

COALESCE_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 60.0
TIMEOUT_SECONDS = 300.0


class AutoPusher:
    def __init__(
        self,
        store: Store,
        git_dir: str,
        url: str,
        *,
        coalesce: float = COALESCE_SECONDS,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.git_dir = git_dir
        self.url = url
        self.shown = shown_url(url)  # what the log says: never the password
        self.coalesce = coalesce
        self.timeout = timeout
        self.dirty: dict[str, str | None] = {}
        self._wake = trio.Event()
        store.add_listener(self._on_change)
        log.info("Auto-push to %s enabled", self.shown)

    def _on_change(self, branch: str, head: str | None) -> None:
        log.debug("Marking %s/%s as dirty", self.git_dir, branch)
        self.dirty[branch] = head
        self._wake.set()

    async def run(self) -> None:
        backoff = 1.0
        while True:
            if not self.dirty:
                await self._wake.wait()
                self._wake = trio.Event()
            await trio.sleep(self.coalesce)  # let a burst of commits pile up
            batch, self.dirty = self.dirty, {}
            if await self.push(batch):
                backoff = 1.0
                continue
            # Keep what failed unless a newer update for the branch already arrived.
            for branch, head in batch.items():
                self.dirty.setdefault(branch, head)
            log.warning("auto-push to %s failed; retrying in %.0f s", self.shown, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def push(self, batch: dict[str, str | None]) -> bool:
        refspecs = [
            f"+refs/heads/{b}:refs/heads/{b}" if head else f":refs/heads/{b}"
            for b, head in sorted(batch.items())
        ]
        cmd = ["git", "-C", self.git_dir, "push", "--quiet", "--", self.url, *refspecs]
        shown = subprocess.list2cmdline([*cmd[: -1 - len(refspecs)], self.shown, *refspecs])
        # No prompt can ever wait for an answer: no terminal, no stdin.
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        start = time.perf_counter()
        result = None
        try:
            with trio.move_on_after(self.timeout):  # cancelling kills git
                result = await trio.run_process(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=env,
                    # git runs helpers (git remote-http, ssh) that outlive a
                    # killed git: the whole group goes on a timeout.
                    start_new_session=True,
                    deliver_cancel=_kill_group,
                )
        except OSError as exc:
            log.error("git push failed: %s", exc)
            metrics.PUSHES.labels("error").inc()
            return False
        finally:
            metrics.PUSH_SECONDS.observe(time.perf_counter() - start)
        if result is None:
            log.error("%s timed out after %g s", shown, self.timeout)
            metrics.PUSHES.labels("error").inc()
            return False
        if result.returncode != 0:
            err = self._hide(result.stderr.decode("utf-8", "replace").strip())
            log.error("%s exited with code %d: %s", shown, result.returncode, err)
            metrics.PUSHES.labels("error").inc()
            return False
        metrics.PUSHES.labels("ok").inc()
        log.info("pushed %s to %s", ", ".join(sorted(batch)), self.shown)
        return True

    def _hide(self, text: str) -> str:
        """git's output without the URL's password (git may echo it)."""
        try:
            password = urlsplit(self.url).password if "://" in self.url else None
        except ValueError:
            password = None
        text = text.replace(self.url, self.shown)
        return text.replace(password, "***") if password else text


async def _kill_group(process: trio.Process) -> None:
    """Kill git and every helper it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):  # gone already
        os.killpg(process.pid, signal.SIGKILL)
