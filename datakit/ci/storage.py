"""Everything the CI keeps in DataKit (spec ci.md A.3, A.4, B.5), as plain
synchronous functions over a :class:`datakit.client.Connection` (the engine
runs them in a thread through ``bridges.service.Store.run``).

The layout and the commit messages are upstream's, so a store written by
the original CI reads here and the other way round, and so the GitHub
bridge pushes our statuses unchanged:

* a *result branch* per run: ``log``, ``failure`` (iff it failed),
  ``value/`` (``description``, ``exit-status``, ``duration``) and the
  ``rebuild-requested`` marker;
* a *history branch* per target: ``source-commit``, ``metadata-commit``,
  ``job/<name>/output`` (upstream's JSON) and ``summary`` (#345);
* ``commit-index``: ``<user>/<repo>/commit/<sha>/<sub>`` -> history commit;
* statuses and ``.monitor`` files on ``github-metadata``.

Readers are tolerant: whatever someone else left in these branches (a
directory where ``log`` belongs, JSON that is not JSON) reads as "no
result" or is skipped, with a log line; only :class:`DataKitError`
subclasses (and transport ``OSError``) leave these functions. Names and
commit ids that come from web URLs are checked before they are used, and
never create a branch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from datakit.ci import naming
from datakit.ci.model import HistoryEntry, JobState, RunResult, Summary, TargetId
from datakit.client import (
    Branch,
    Commit,
    Conflict,
    Connection,
    DoesNotExist,
    InvalidBranchName,
    InvalidPath,
    Kind,
    NameTooLong,
    NotADirectory,
    NotAFile,
    Transaction,
)
from datakit.client.api import Reader
from datakit.github import tree as gh
from datakit.github.model import Repo, Status

log = logging.getLogger(__name__)

METADATA_BRANCH = gh.BRANCH
LOG, FAILURE, VALUE, REBUILD = "log", "failure", "value", "rebuild-requested"
MSG_SUCCESS = "Cached successful result"
MSG_FAILURE = "Cached failure: "
MSG_REBUILD = "Marked for rebuild"
MSG_MONITORS = "Add .monitor files"
CONFLICT_RETRIES = 5
# How far read_log walks back from a result branch's head looking for the
# commit a URL names; result branches hold a few commits per rebuild.
MAX_WALK = 1000
NAME_MAX = 255
N = TypeVar("N", int, float)
_SHA = re.compile(r"[0-9a-f]{40}")


class _Junk(Exception):
    """Something in the tree is not what the layout says (internal)."""


# --- small helpers --------------------------------------------------------------


def _file(tree: Reader, path: str | Sequence[str]) -> bytes | None:
    """A regular file's bytes, None if absent; _Junk if something else is there."""
    try:
        return tree.read_file(path)
    except DoesNotExist:
        return None
    except (NotAFile, NotADirectory) as exc:
        raise _Junk(f"{path}: not a file ({exc})") from None


def _existing(conn: Connection, name: str) -> Branch | None:
    """The branch if it exists. ``conn.branch`` would create an empty one
    (over 9p), and names from URLs must not litter the server."""
    try:
        if name not in conn.branches():
            return None
        return conn.branch(name)
    except (InvalidBranchName, NameTooLong):
        return None


def _commit(branch: Branch, fill: Callable[[Transaction], str | None]) -> bool:
    """Run ``fill`` in a transaction and commit with the message it returns
    (None: nothing changed, no commit). A Conflict (someone else wrote the
    same files meanwhile, e.g. a bridge on github-metadata) is retried on a
    fresh transaction, which sees their commit."""
    for attempt in range(1, CONFLICT_RETRIES + 1):
        with branch.transaction() as tx:
            message = fill(tx)
            if message is None:
                return False
            try:
                tx.commit(message)
                return True
            except Conflict:
                log.info("%s: conflict on commit (attempt %d); retrying", branch.name, attempt)
    raise Conflict(f"{branch.name}: still conflicting after {CONFLICT_RETRIES} attempts")


def _head_id(branch: Branch) -> str:
    head = branch.head()
    if head is None:  # only if someone removed it as we wrote
        raise DoesNotExist(f"{branch.name}: branch vanished after a commit")
    return head.id


def _commit_id(text: str) -> str | None:
    text = text.strip().lower()
    return text if _SHA.fullmatch(text) else None


# --- result branches ------------------------------------------------------------


@dataclass(frozen=True)
class StoredRun:
    """A result branch's head: the finished run it records (None: no usable
    result, e.g. only a marker or junk), whether a rebuild was asked for,
    and the head commit id (where the saved log lives)."""

    result: RunResult | None
    rebuild_requested: bool
    commit: str


def read_run(conn: Connection, branch: str, *, with_log: bool = True) -> StoredRun | None:
    """The stored run on ``branch``; None if the branch is missing or empty.
    ``with_log=False`` leaves ``result.log`` empty: deciding whether to
    reuse a result should not pull megabytes of log over 9p."""
    head = conn.branch(branch).head()
    if head is None:
        return None
    tree = head.tree()
    rebuild = tree.exists(REBUILD)
    try:
        result = _load_result(tree, with_log)
    except _Junk as exc:
        log.warning("result branch %s (%s): ignoring the stored result: %s", branch, head.id, exc)
        result = None
    return StoredRun(result=result, rebuild_requested=rebuild, commit=head.id)


def _load_result(tree: Reader, with_log: bool) -> RunResult | None:
    if with_log:
        data = _file(tree, LOG)
        if data is None:
            return None
    elif tree.stat(LOG) is None:
        return None
    else:
        data = b""
    raw_failure = _file(tree, FAILURE)
    failure = None if raw_failure is None else raw_failure.decode("utf-8", "replace")
    raw_descr = _file(tree, (VALUE, "description"))
    if raw_descr is not None:
        description = raw_descr.decode("utf-8", "replace").strip()
    else:  # written by upstream, which has no description file
        description = failure if failure is not None else "passed"
    return RunResult(
        description=description,
        failure=failure,
        exit_status=_number(tree, "exit-status", int),
        duration=_number(tree, "duration", float) or 0.0,
        log=data,
    )


def _number(tree: Reader, name: str, kind: type[N]) -> N | None:
    raw = _file(tree, (VALUE, name))
    if raw is None:
        return None
    try:
        return kind(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise _Junk(f"value/{name}: not a number: {raw[:40]!r}") from None


def write_run(conn: Connection, branch: str, result: RunResult) -> str:
    """Record a finished run (replacing whatever the branch held, the
    rebuild marker included); the new head commit id."""
    b = conn.branch(branch)

    def fill(tx: Transaction) -> str | None:
        for name in tx.read_dir(""):
            tx.remove(name)
        tx.create_file(LOG, result.log)
        if result.failure is not None:
            tx.create_file(FAILURE, result.failure.encode("utf-8", "replace"))
        tx.create_dir(VALUE)
        tx.create_file((VALUE, "description"), result.description.encode("utf-8", "replace"))
        if result.exit_status is not None:
            tx.create_file((VALUE, "exit-status"), f"{result.exit_status}\n".encode())
        tx.create_file((VALUE, "duration"), f"{float(result.duration)!r}\n".encode())
        parents = tx.parents()
        if parents and not tx.diff(parents[0]):
            return None  # the same result again: no empty commit
        if result.failure is None:
            return MSG_SUCCESS
        return MSG_FAILURE + result.failure

    _commit(b, fill)
    return _head_id(b)


def request_rebuild(conn: Connection, branch: str) -> bool:
    """Commit the ``rebuild-requested`` marker (upstream's, empty); False if
    there is no such result branch. Asking twice makes one commit."""
    b = _existing(conn, branch)
    if b is None or b.head() is None:
        return False

    def fill(tx: Transaction) -> str | None:
        if tx.exists(REBUILD):
            return None
        tx.create_file(REBUILD, b"")
        return MSG_REBUILD

    _commit(b, fill)
    return True


def read_log(conn: Connection, branch: str, commit: str) -> bytes | None:
    """The ``log`` saved at ``commit`` of result branch ``branch``, or None.
    Both come from a URL: the commit must be the branch's head or one of
    its ancestors, so a URL cannot read arbitrary objects of the store."""
    wanted = _commit_id(commit)
    b = _existing(conn, branch)
    if wanted is None or b is None:
        return None
    head = b.head()
    found = _find_ancestor(head, wanted) if head is not None else None
    if found is None:
        log.info("log of %s at %r requested: not a commit of that branch", branch, commit[:60])
        return None
    try:
        return _file(found.tree(), LOG)
    except _Junk as exc:
        log.warning("result branch %s at %s: %s", branch, wanted, exc)
        return None


def _find_ancestor(head: Commit, wanted: str) -> Commit | None:
    seen: set[str] = set()
    todo = [head]
    while todo and len(seen) < MAX_WALK:
        c = todo.pop(0)
        if c.id in seen:
            continue
        if c.id == wanted:
            return c
        seen.add(c.id)
        todo.extend(c.parents)
    return None


# --- history and index ----------------------------------------------------------


@dataclass(frozen=True)
class JobOutput:
    """One job's ``job/<name>/output`` on a history branch (A.4): status
    (success/pending/failure), description and upstream's ``logs`` value:
    None, ``{"branch": b}`` (live), ``{"title", "branch", "commit",
    "failed"}`` (saved) or a list of two of these."""

    status: str
    descr: str
    logs: dict[str, Any] | list[Any] | None = None

    def to_json(self) -> bytes:
        # Yojson.Basic.to_string: compact, keys in this order, UTF-8 as is.
        doc = {"result": {"status": self.status, "descr": self.descr}, "logs": self.logs}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")

    @classmethod
    def from_json(cls, data: bytes) -> JobOutput:
        """ValueError unless ``data`` has upstream's shape."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except RecursionError:  # "[[[[…" nested past the interpreter's limit
            raise ValueError("JSON nested too deeply") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("result"), dict):
            raise ValueError("no result object")
        status, descr = doc["result"].get("status"), doc["result"].get("descr")
        logs = doc.get("logs")
        if not isinstance(status, str) or not isinstance(descr, str):
            raise ValueError("result.status and result.descr must be strings")
        if logs is not None and not isinstance(logs, dict | list):
            raise ValueError("logs must be null, an object or an array")
        return cls(status, descr, logs)


def write_history(
    conn: Connection,
    ident: TargetId,
    source_commit: str,
    metadata_commit: str | None,
    outputs: dict[str, JobOutput],
    summary: Summary,
) -> str | None:
    """Record one evaluation of a target (upstream's ``CI_history.record``):
    a commit on its history branch when a job's output changed, a job came
    or went, or the source commit moved; then the ``commit-index`` entry
    for the source commit. A new ``metadata-commit`` alone is not a change
    (every status the CI writes makes one). Returns the history commit id,
    or None when nothing changed."""
    b = conn.branch(naming.history_branch(ident))

    def fill(tx: Transaction) -> str | None:
        messages = _write_jobs(tx, outputs)
        try:
            old_source = _file(tx, "source-commit")
        except _Junk:
            old_source = None
        if not messages and old_source == source_commit.encode():
            return None
        _put(tx, "source-commit", source_commit.encode())
        if metadata_commit is not None:
            _put(tx, "metadata-commit", metadata_commit.encode())
        _put(tx, "summary", str(summary).encode())
        if not messages:
            return "Update"
        if len(messages) == 1:
            return messages[0]
        ms = messages[::-1]  # upstream lists the newest first
        return f"{len(ms)} updates ({ms[0]}, ...)\n\n" + "\n".join(ms)

    if not _commit(b, fill):
        return None
    history = _head_id(b)
    _write_index(conn, ident, source_commit, history)
    return history


def _put(tx: Transaction, path: str | tuple[str, ...], data: bytes) -> None:
    """create_or_replace_file that also clears junk in the way (a directory
    where the file belongs, a file where a parent directory belongs)."""
    steps = (path,) if isinstance(path, str) else path
    for i in range(1, len(steps)):
        st = tx.stat(steps[:i])
        if st is not None and st.kind is not Kind.DIR:
            tx.remove(steps[:i])
        if st is None or st.kind is not Kind.DIR:
            tx.create_dir(steps[:i])
    st = tx.stat(steps)
    if st is not None and st.kind is Kind.DIR:
        tx.remove(steps)
    tx.create_or_replace_file(steps, data)


def _write_jobs(tx: Transaction, outputs: dict[str, JobOutput]) -> list[str]:
    """Bring ``job/`` in line with ``outputs``; the messages of the changes."""
    messages: list[str] = []
    st = tx.stat("job")
    if st is not None and st.kind is not Kind.DIR:
        tx.remove("job")
        st = None
    present = tx.read_dir("job") if st is not None else []
    for name in present:
        if name not in outputs:
            tx.remove(("job", name))
            messages.append(f"Remove old job {name}")
    for name in sorted(outputs):
        data = outputs[name].to_json()
        try:
            old = _file(tx, ("job", name, "output"))
        except _Junk:
            old = None
        if old != data:
            _put(tx, ("job", name, "output"), data)
            messages.append(f"{name} -> {outputs[name].descr}")
    return messages


def _write_index(conn: Connection, ident: TargetId, sha: str, history: str) -> None:
    sub = naming.target_sub(ident)
    if _commit_id(sha) is None or len(sub.encode()) > NAME_MAX:
        log.warning("%s: no commit-index entry for source commit %r", ident, sha[:60])
        return
    path = naming.index_path(ident.repo, sha.strip().lower(), ident)

    def fill(tx: Transaction) -> str | None:
        try:
            if _file(tx, path) == history.encode():
                return None
        except _Junk:
            pass
        _put(tx, path, history.encode())
        return f"Update {sub}:{sha} -> {history}"

    try:
        _commit(conn.branch(naming.INDEX_BRANCH), fill)
    except (Conflict, DoesNotExist) as exc:  # the history is written; the index can lag
        log.warning("commit-index entry for %s at %s not written: %s", ident, sha, exc)


_STATES = {"success": JobState.SUCCESS, "failure": JobState.FAILURE}


def read_history(conn: Connection, ident: TargetId, limit: int) -> list[HistoryEntry]:
    """Up to ``limit`` evaluations of a target, newest first (commits of
    its history branch that do not parse are skipped, with a log line)."""
    b = _existing(conn, naming.history_branch(ident))
    head = b.head() if b is not None else None
    entries: list[HistoryEntry] = []
    seen: set[str] = set()
    todo = [head] if head is not None else []
    while todo and len(entries) < limit and len(seen) < limit * 4 + 16:
        c = todo.pop(0)
        if c.id in seen:
            continue
        seen.add(c.id)
        todo.extend(c.parents)
        try:
            entries.append(_history_entry(c))
        except _Junk as exc:
            log.warning("history of %s, commit %s: skipped: %s", ident, c.id, exc)
    return entries


def _history_entry(commit: Commit) -> HistoryEntry:
    tree = commit.tree()
    raw_source = _file(tree, "source-commit")
    if raw_source is None:
        raise _Junk("no source-commit")
    jobs: list[tuple[str, str, str]] = []
    names = tree.read_dir("job") if tree.exists_dir("job") else []
    for name in names:
        try:
            raw = _file(tree, ("job", name, "output"))
            if raw is None:
                continue
            out = JobOutput.from_json(raw)
        except (_Junk, ValueError) as exc:
            log.warning("history commit %s: job %s skipped: %s", commit.id, name, exc)
            continue
        jobs.append((name, out.status, out.descr))
    try:
        summary = Summary((_file(tree, "summary") or b"").decode().strip())
    except (ValueError, _Junk):  # written by upstream, or junk: derive it
        summary = Summary.of({n: _STATES.get(s, JobState.QUEUED) for n, s, _ in jobs})
    return HistoryEntry(
        commit=commit.id,
        source_commit=raw_source.decode("utf-8", "replace").strip(),
        jobs=tuple(jobs),
        summary=summary,
    )


def builds_of_commit(conn: Connection, repo: Repo, sha: str) -> list[tuple[TargetId, str]]:
    """(target, history commit) for every recorded build of ``sha``, from
    ``commit-index`` (archived targets included), sorted by target."""
    wanted = _commit_id(sha)
    b = _existing(conn, naming.INDEX_BRANCH)
    head = b.head() if b is not None else None
    if wanted is None or head is None:
        return []
    tree = head.tree()
    try:
        names = tree.read_dir((repo.user, repo.name, "commit", wanted))
    except (DoesNotExist, NotADirectory, InvalidPath):
        return []
    found: list[tuple[TargetId, str]] = []
    for name in names:
        try:
            ident = naming.parse_target_sub(repo, name)
            raw = _file(tree, (repo.user, repo.name, "commit", wanted, name))
            history = _commit_id((raw or b"").decode("ascii"))
            if history is None:
                raise ValueError(f"not a commit id: {(raw or b'')[:60]!r}")
        except (ValueError, _Junk) as exc:
            log.warning("commit-index entry %s/commit/%s/%s skipped: %s", repo, wanted, name, exc)
            continue
        found.append((ident, history))
    return sorted(found, key=lambda item: (naming.target_label(item[0]), item[1]))


# --- github-metadata --------------------------------------------------------------


def write_statuses(
    conn: Connection,
    statuses: Iterable[Status],
    message: str | Callable[[list[Status]], str],
) -> bool:
    """Write statuses in the bridges' layout in one commit on
    ``github-metadata``; only files that differ are touched and nothing is
    committed when none does. True if it committed. ``message`` may be a
    function of the statuses that changed (so the commit names only those)."""
    wanted = list(statuses)
    b = conn.branch(METADATA_BRANCH)

    def fill(tx: Transaction) -> str | None:
        changed: list[Status] = []
        for status in wanted:
            old = gh.read_status(tx, status.id)
            if old != status:
                gh.write_status(tx, status, old)
                changed.append(status)
        if not changed:
            return None
        parents = tx.parents()
        if parents and not tx.diff(parents[0]):
            # What was read differs only in what the layout normalises
            # (trimming): the files are already right; no empty commit.
            return None
        return message if isinstance(message, str) else message(changed)

    return _commit(b, fill)


def status_message(target: str, changes: Sequence[tuple[str, str]]) -> str:
    """Upstream's message for one target's status changes (A.3 step 3):
    ``Set <target>:<job> to <descr>`` or ``Update N jobs in <target>``."""
    if not changes:
        raise ValueError("status_message: no changes")
    if len(changes) == 1:
        job, descr = changes[0]
        return f"Set {target}:{job} to {descr}"
    return f"Update {len(changes)} jobs in {target}"


def combine_messages(messages: Sequence[str]) -> str:
    """Several targets in one commit: ``N updates`` and the list (upstream)."""
    if len(messages) == 1:
        return messages[0]
    return f"{len(messages)} updates\n\n" + "\n".join(messages)


def ensure_monitors(conn: Connection, repos: Iterable[Repo]) -> bool:
    """Write ``<user>/<repo>/.monitor`` for every repo missing one (commit
    ``Add .monitor files``); True if it committed."""
    wanted = list(repos)
    b = conn.branch(METADATA_BRANCH)

    def fill(tx: Transaction) -> str | None:
        missing = []
        for repo in wanted:
            try:
                present = _file(tx, gh.monitor_file(repo)) is not None
            except _Junk:
                present = False
            if not present:
                missing.append(repo)
        for repo in missing:
            gh.write_monitor(tx, repo)
        return MSG_MONITORS if missing else None

    return _commit(b, fill)


def source_is_datakit_store(path_or_url: str, timeout: float = 60.0) -> bool:
    """CI-18: does ``git ls-remote`` show a ``github-metadata`` branch? Then
    the source is a DataKit store (most likely the CI's own database) and
    testing it would feed every result commit back in as a new build. An
    unreachable source is not one (False): the engine reports those."""
    if not path_or_url or path_or_url.startswith("-"):
        return False
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--heads", "--", path_or_url, "refs/heads/" + METADATA_BRANCH],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("git ls-remote %s: %s", path_or_url, exc)
        return False
    if proc.returncode != 0:
        return False
    wanted = b"\trefs/heads/" + METADATA_BRANCH.encode()
    return any(line.rstrip(b"\r").endswith(wanted) for line in proc.stdout.splitlines())


__all__ = [
    "METADATA_BRANCH",
    "JobOutput",
    "StoredRun",
    "builds_of_commit",
    "combine_messages",
    "ensure_monitors",
    "read_history",
    "read_log",
    "read_run",
    "request_rebuild",
    "source_is_datakit_store",
    "status_message",
    "write_history",
    "write_run",
    "write_statuses",
]
