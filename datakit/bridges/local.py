"""``datakit bridge local`` (``datakit-bridge-local-git``): publish the
branches of local Git repositories in ``github-metadata`` (spec bridges.md §4).

A stand-in for the GitHub bridge, to try a CI without GitHub. For each
``user/repo:PATH`` it writes ``<user>/<repo>/ref/heads/<branch…>/head`` and
nothing else, and follows the repository's branches as they change.

How it works: one task per repository re-reads its refs whenever inotify
(or the poll timer) says they may have changed and keeps the latest
branch → SHA map; a sync task turns the difference between that map and
what the branch holds into one transaction (message lines as upstream's
``bridge/local/sync.ml``), aborted when nothing differs and retried when
the commit conflicts; a third task watches the metadata branch's head, so
that a store that restarted (and lost or changed our refs) is brought
back in line. The repository is never written to (see
:mod:`datakit.bridges.gitrefs`).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import trio
from prometheus_client import Counter, Gauge

from datakit.bridges import service
from datakit.bridges.gitrefs import NotARepository, RefName, RefWatcher, find_git_dir, read_refs
from datakit.bridges.reflayout import format_ref, remove_ref, write_ref
from datakit.bridges.reflayout import read_refs as read_stored_refs
from datakit.client import (
    Conflict,
    Connection,
    DataKitError,
    InvalidPath,
    NameTooLong,
    Transaction,
)
from datakit.github.model import Repo
from datakit.options import LEVELS, UsageError, log_level, seconds

PROG = "datakit-bridge-local-git"
BRANCH = "github-metadata"
MAX_ATTEMPTS = 5  # commits retried after a conflict (upstream's GitHub bridge: 5)

log = logging.getLogger("datakit.bridges.local")

SYNCS = Counter(
    "datakit_bridge_local_syncs_total",
    "Syncs of the refs into github-metadata, by outcome "
    "(committed, unchanged, conflict: retried, gave_up, error).",
    ["outcome"],
    registry=service.REGISTRY,
)
REF_READS = Counter(
    "datakit_bridge_local_ref_reads_total",
    "Reads of a watched repository's refs, by outcome (ok, error).",
    ["outcome"],
    registry=service.REGISTRY,
)
REFS = Gauge(
    "datakit_bridge_local_refs",
    "Refs currently published, by repository.",
    ["repo"],
    registry=service.REGISTRY,
)
LAST_SYNC = Gauge(
    "datakit_bridge_local_last_commit_timestamp_seconds",
    "When the bridge last committed to github-metadata (Unix time).",
    registry=service.REGISTRY,
)


@dataclass(frozen=True)
class WatchedRepo:
    repo: Repo
    path: str
    git_dir: Path


def parse_repo_name(text: str) -> Repo:
    """``user/project`` (upstream's characters); upstream's message otherwise."""
    try:
        return Repo.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_repo_arg(text: str) -> tuple[Repo, str]:
    """``user/repo:PATH`` (split at the first ``:``, as upstream)."""
    name, sep, path = text.partition(":")
    if not sep:
        raise UsageError(f"{text!r}: expected NAME:PATH, e.g. me/project:/srv/project")
    repo = parse_repo_name(name)
    if not path:
        raise UsageError(f"{text!r}: no PATH after {name}:")
    return repo, path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "repositories",
        nargs="+",
        metavar="NAME:PATH",
        help="a repository to publish and its name, e.g. me/project:/srv/project "
        "(PATH: a work tree or a bare repository; only read, never written)",
    )
    parser.add_argument(
        "--metadata-store",
        default="tcp:localhost:5640",
        metavar="ADDR",
        help="the DataKit store: tcp:HOST[:PORT] (upstream's form), tcp://HOST[:PORT], "
        "unix://PATH or file://PATH (a Unix socket), git://PATH or a repository path "
        "(no server) (default: %(default)s)",
    )
    parser.add_argument(
        "--tags",
        action="store_true",
        help="also publish refs/tags/* as ref/tags/<tag>/head (annotated tags peeled "
        "to their commit)",
    )
    parser.add_argument(
        "--poll-interval",
        type=seconds(),
        metavar="SECONDS",
        help="re-read the refs this often; without inotify the default is 0.5, with "
        "inotify the refs are re-read on each change and every 60 s as a safety net",
    )
    parser.add_argument(
        "--no-inotify", action="store_true", help="poll even where inotify is available"
    )
    parser.add_argument(
        "--listen-prometheus",
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (HOST defaults to 0.0.0.0)",
    )
    logs = parser.add_argument_group("logging")
    logs.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    logs.add_argument(
        "--verbosity",
        choices=list(LEVELS),
        help="log level; overrides -v (default: $DATAKIT_VERBOSE or warning)",
    )
    logs.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="accepted for upstream compatibility; logs are not coloured",
    )


# --- syncing ------------------------------------------------------------------


def sync_refs(
    conn: Connection,
    desired: dict[Repo, dict[RefName, str]],
    namespaces: tuple[str, ...],
    unstorable: set[tuple[Repo, RefName]] | None = None,
) -> str:
    """One sync: make the branch's refs of the repos in ``desired`` (in the
    ``namespaces`` published) equal to ``desired``. Returns the outcome.
    A ref whose name the store cannot hold (a 300-byte name, bytes that are
    not UTF-8) is logged once, added to ``unstorable`` and left out, so it
    can neither stop the others nor make every sync fail again.
    Blocking (the client is): run it in a thread."""
    unstorable = set() if unstorable is None else unstorable
    branch = conn.branch(BRANCH)
    conflicts = 0
    while conflicts < MAX_ATTEMPTS:
        with branch.transaction() as t:
            lines = _plan_and_write(t, desired, namespaces, unstorable)
            if lines is None:
                continue  # a name could not be stored: start again without it
            if not lines:
                log.debug("No updates needed")
                t.abort()
                return "unchanged"
            try:
                t.commit("\n".join(lines))
            except Conflict as exc:
                log.info("github-metadata moved and conflicts (%s): trying again", exc)
                SYNCS.labels("conflict").inc()
                conflicts += 1
                continue
            log.info("Committed: %s", "; ".join(lines))
            return "committed"
    return "gave_up"


UNSTORABLE = (InvalidPath, NameTooLong, UnicodeError)


def _plan_and_write(
    t: Transaction,
    desired: dict[Repo, dict[RefName, str]],
    namespaces: tuple[str, ...],
    unstorable: set[tuple[Repo, RefName]],
) -> list[str] | None:
    """Compare and write in ``t``; the commit message's lines, or None if a
    name turned out to be unstorable (now in ``unstorable``)."""
    parents = t.parents()
    tree = parents[0].tree() if parents else None
    lines: list[str] = []
    removed: list[tuple[Repo, RefName]] = []
    written: list[tuple[Repo, RefName, str]] = []
    stored_all = {
        repo: {
            name: sha for ns in namespaces for name, sha in read_stored_refs(tree, repo, ns).items()
        }
        for repo in desired
    }
    for repo, stored in sorted(stored_all.items()):
        for name, old in sorted(stored.items()):
            new = desired[repo].get(name)
            if new is None:
                log.info("Branch %s no longer exists", format_ref(repo, name, old))
                lines.append(f"Removing deleted branch {format_ref(repo, name, old)}")
                removed.append((repo, name))
            elif new != old:
                lines.append(f"Updating existing branch to {format_ref(repo, name, new)}")
                written.append((repo, name, new))
    for repo, want in sorted(desired.items()):
        for name, sha in sorted(want.items()):
            if name not in stored_all[repo] and (repo, name) not in unstorable:
                log.info("Tracking new branch %s", format_ref(repo, name, sha))
                lines.append(f"Tracking new branch {format_ref(repo, name, sha)}")
                written.append((repo, name, sha))
    for repo, name in removed:
        remove_ref(t, repo, name)
    for repo, name, sha in written:
        try:
            write_ref(t, repo, name, sha)
        except UNSTORABLE as exc:
            log.warning(
                "%s: cannot be stored in %s (%s); left out",
                format_ref(repo, name, sha),
                BRANCH,
                exc,
            )
            unstorable.add((repo, name))
            return None
    return lines


class LocalBridge:
    """The three tasks of the bridge (see the module docstring)."""

    def __init__(
        self,
        store: service.Store,
        repos: list[WatchedRepo],
        *,
        tags: bool = False,
        use_inotify: bool = True,
        poll_interval: float | None = None,
    ) -> None:
        self.store = store
        self.repos = repos
        self.namespaces = ("heads", "tags") if tags else ("heads",)
        self.use_inotify = use_inotify
        self.poll_interval = poll_interval
        self.known: dict[Repo, dict[RefName, str]] = {}
        self._wake = trio.Event()
        self._read_once: set[Repo] = set()
        self._ready = trio.Event()
        self.synced = 0  # syncs done (any outcome), for tests and logs
        self.unstorable: set[tuple[Repo, RefName]] = set()

    def poke(self) -> None:
        self._wake.set()

    async def run(self, listen: tuple[str, int] | None = None) -> None:
        async with trio.open_nursery() as nursery:
            if listen is not None:
                await nursery.start(service.serve_prometheus, *listen)
            for repo in self.repos:
                nursery.start_soon(self._follow_repo, repo)
            nursery.start_soon(self._follow_store)
            nursery.start_soon(self._sync_loop)

    async def _follow_repo(self, watched: WatchedRepo) -> None:
        watcher = RefWatcher(
            watched.git_dir,
            use_inotify=self.use_inotify,
            poll_interval=self.poll_interval or 0.5,
            safety_interval=self.poll_interval or 60.0,
        )
        if watcher.uses_inotify:
            watcher.start()
        log.info(
            "Monitoring local repository %s as %s (%s)",
            watched.path,
            watched.repo,
            "inotify" if watcher.uses_inotify else "polling",
        )
        failing = False
        tags = "tags" in self.namespaces
        try:
            while True:
                try:
                    refs = await trio.to_thread.run_sync(read_refs, watched.git_dir, tags)
                except Exception as exc:  # a service keeps going: logged, tried again
                    log.debug("reading the refs of %s", watched.path, exc_info=True)
                    REF_READS.labels("error").inc()
                    if not failing:
                        log.warning("cannot read the refs of %s: %s", watched.path, exc)
                    failing = True
                else:
                    REF_READS.labels("ok").inc()
                    if failing:
                        log.warning("reading the refs of %s again", watched.path)
                    failing = False
                    if self.known.get(watched.repo) != refs:
                        self.known[watched.repo] = refs
                        REFS.labels(str(watched.repo)).set(len(refs))
                        self.poke()
                self._read_once.add(watched.repo)
                if len(self._read_once) == len(self.repos):
                    self._ready.set()
                await watcher.wait()
        finally:
            watcher.close()

    async def _follow_store(self) -> None:
        """Wake the sync whenever github-metadata's head changes, and after
        each reconnection."""
        await self.store.follow(BRANCH, self.poke)

    async def _sync_loop(self) -> None:
        await self._ready.wait()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            desired = {repo: dict(refs) for repo, refs in self.known.items()}
            try:
                outcome = await self.store.run(
                    functools.partial(
                        sync_refs,
                        desired=desired,
                        namespaces=self.namespaces,
                        unstorable=self.unstorable,
                    )
                )
            except Exception as exc:  # a service keeps going: logged, tried again
                outcome = "error"
                log.warning("sync into %s failed: %s; trying again in 1 s", BRANCH, exc)
                log.debug("the failed sync", exc_info=True)
            SYNCS.labels(outcome).inc()
            self.synced += 1
            if outcome == "committed":
                LAST_SYNC.set_to_current_time()
            elif outcome in ("error", "gave_up"):
                await trio.sleep(1)
                self.poke()


# --- the program --------------------------------------------------------------


def prepare(args: argparse.Namespace) -> tuple[service.StoreAddress, list[WatchedRepo]]:
    """Everything checkable before running; UsageError, AddressError or
    NotARepository with one line otherwise."""
    address = service.parse_store_address(args.metadata_store)
    repos: list[WatchedRepo] = []
    for text in args.repositories:
        repo, path = parse_repo_arg(text)
        if any(r.repo == repo for r in repos):
            raise UsageError(f"repository {repo} given twice")
        git_dir = find_git_dir(path)
        read_refs(git_dir, args.tags)  # readable now, or a clear error now
        repos.append(WatchedRepo(repo, path, git_dir))
    return address, repos


def main(args: argparse.Namespace) -> int:
    prog = getattr(args, "prog", PROG)
    try:
        service.setup_logging(log_level(verbosity=args.verbosity, verbose=args.verbose))
        address, repos = prepare(args)
        listen = service.parse_listen(args.listen_prometheus) if args.listen_prometheus else None
    except (UsageError, NotARepository, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    store = service.Store(address)
    log.info("Connecting to the DataKit store at %s", address.text)
    try:
        store.connect_now()
    except (OSError, EOFError, DataKitError, ValueError) as exc:
        print(f"{prog}: {service.describe_connect_error(address, exc)}", file=sys.stderr)
        return 1
    bridge = LocalBridge(
        store,
        repos,
        tags=args.tags,
        use_inotify=not args.no_inotify,
        poll_interval=args.poll_interval,
    )
    try:
        return service.run_service(prog, lambda: bridge.run(listen))
    finally:
        store.close()
