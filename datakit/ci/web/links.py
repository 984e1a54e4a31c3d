"""URLs between the pages (target <-> commit <-> log), the checks every
URL-derived value passes before it is used, and the small formatters the
templates share (status colours, durations).

Every path component built here is percent-quoted, and every component
read from a URL is validated here: the views are asked only about well-formed
repositories, refs, branch names and 40-hex commit ids.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote, urlencode

from datakit.ci.model import JobState, Summary, TargetId
from datakit.client.api import check_branch_name
from datakit.github.model import PRId, RefId, Repo

_SHA = re.compile(r"[0-9a-f]{40}\Z")
# A ref component: what git accepts, minus what never appears in a real
# ref name, so a URL can't smuggle "..", control characters or slashes.
_REF_PART = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\/]+\Z")


def q(part: str) -> str:
    """One path component, percent-quoted (``/`` included)."""
    return quote(part, safe="")


# --- validation of URL-derived values -----------------------------------------


def parse_repo(user: str, repo: str) -> Repo | None:
    try:
        return Repo.parse(f"{user}/{repo}")
    except ValueError:
        return None


def parse_sha(text: str) -> str | None:
    """A full commit id (lower-case 40 hex), or None."""
    return text if _SHA.match(text) else None


def parse_branch(text: str) -> str | None:
    """A DataKit branch name (``check_branch_name``), or None."""
    try:
        return check_branch_name(text)
    except ValueError:
        return None


def parse_pr(repo: Repo, number: str) -> PRId | None:
    if not number.isascii() or not number.isdigit() or len(number) > 12:
        return None
    return PRId(repo, int(number))


def parse_ref(repo: Repo, ref: str) -> RefId | None:
    parts = tuple(ref.split("/"))
    if len(parts) < 2 or len(ref) > 1024:
        return None
    for part in parts:
        if (
            not _REF_PART.match(part)
            or part.startswith(".")
            or part.endswith((".", ".lock"))
            or ".." in part
            or "@{" in part
        ):
            return None
    return RefId(repo, parts)


def safe_redirect(target: str | None, default: str = "/") -> str:
    """A local path to go back to after a POST, never another site."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target)
    ):
        return default
    return target


# --- URLs ----------------------------------------------------------------------


def target_path(ident: TargetId) -> str:
    """``/me/p/pr/5`` or ``/me/p/ref/heads/master``."""
    base = f"/{q(ident.repo.user)}/{q(ident.repo.name)}"
    if isinstance(ident, PRId):
        return f"{base}/pr/{ident.number}"
    return f"{base}/ref/{'/'.join(q(p) for p in ident.name)}"


def target_url(ident: TargetId, test: str | None = None) -> str:
    path = target_path(ident)
    return f"{path}?{urlencode({'test': test})}" if test else path


def commit_url(repo: Repo, sha: str, test: str | None = None) -> str:
    path = f"/{q(repo.user)}/{q(repo.name)}/commit/{q(sha)}"
    return f"{path}?{urlencode({'test': test})}" if test else path


def live_log_url(branch: str) -> str:
    return f"/log/live/{q(branch)}"


def saved_log_url(branch: str, commit: str) -> str:
    return f"/log/saved/{q(branch)}/{q(commit)}"


def raw_log_url(branch: str, commit: str) -> str:
    return f"/log/raw/{q(branch)}/{q(commit)}"


def rebuild_failed_url(ident: TargetId) -> str:
    return "/rebuild-failed" + target_path(ident)


def target_label(ident: TargetId) -> str:
    """How a target is named on the pages: ``#5``, ``master`` (a branch),
    ``v1.0`` (a tag), ``notes/x`` (any other ref)."""
    if isinstance(ident, PRId):
        return f"#{ident.number}"
    if ident.name[0] in ("heads", "tags") and len(ident.name) > 1:
        return "/".join(ident.name[1:])
    return "/".join(ident.name)


def target_kind(ident: TargetId) -> str:
    if isinstance(ident, PRId):
        return "pr"
    return {"heads": "branch", "tags": "tag"}.get(ident.name[0], "ref")


# --- formatting ----------------------------------------------------------------


def state_class(state: JobState | Summary | str | None) -> str:
    """The colour of a status: success (green), pending (amber), failure
    (red), unknown (grey). Job states queued/waiting/running are pending."""
    if state is None:
        return "unknown"
    value = str(state)
    if value in ("success", "failure"):
        return value
    if value in ("pending", "queued", "waiting", "running"):
        return "pending"
    if value == "error":
        return "failure"
    return "unknown"


def format_duration(seconds: float | None) -> str:
    """``"1m 12s"``; empty for an unknown duration."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    if seconds < 1:
        return "<1s"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60}s"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60}m"
    return f"{total // 86400}d {total % 86400 // 3600}h"


def format_ago(timestamp: float | None, now: float | None = None) -> str:
    """``"3m ago"``, ``"2h ago"``; empty for an unknown time."""
    if timestamp is None:
        return ""
    delta = int((time.time() if now is None else now) - timestamp)
    if delta < 1:
        return "just now"
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= seconds:
            return f"{delta // seconds}{unit} ago"
    return f"{delta}s ago"


def format_size(size: int | None) -> str:
    """``"66 bytes"``, ``"12.5 KiB"``, ``"3.2 MiB"``."""
    if size is None:
        return ""
    if size < 1024:
        return f"{size} byte{'s' if size != 1 else ''}"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def short(sha: str | None) -> str:
    return (sha or "")[:10]


__all__ = [
    "commit_url",
    "format_ago",
    "format_duration",
    "format_size",
    "live_log_url",
    "parse_branch",
    "parse_pr",
    "parse_ref",
    "parse_repo",
    "parse_sha",
    "q",
    "raw_log_url",
    "rebuild_failed_url",
    "safe_redirect",
    "saved_log_url",
    "short",
    "state_class",
    "target_kind",
    "target_label",
    "target_path",
    "target_url",
]
