"""Names the CI gives to things in DataKit and on the web (spec ci.md A.4, B.5).

Branch names must survive a round trip and be valid DataKit branch names
(one 9p path component: ``[A-Za-z0-9_.-]``), yet user, repository and ref
names may hold anything. Upstream's answer, kept byte for byte so a store
written by either CI reads the same: keep ``[A-Za-z0-9.]``, write every
other byte as ``_`` + two hex digits (so ``-`` is free to separate fields
and ``_`` is the escape character).

One addition: a dot is also escaped where Git would refuse the result
(``..``, a trailing ``.``, a ``.lock`` suffix; e.g. tag ``v1.``). Upstream
kept those and crashed on them; ordinary names (``v1.0``) are unchanged and
:func:`unescape` needs no change since ``_2e`` is an ordinary escape.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

from datakit.ci.model import JobSpec, TargetId
from datakit.github.model import PRId, RefId, Repo

_KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_ESCAPE = re.compile(r"_([0-9a-fA-F]{2})")
_ESCAPED_PART = re.compile(r"(?:[A-Za-z0-9.]|_[0-9a-fA-F]{2})*")

HISTORY_PREFIX = "status"
MAX_BRANCH = 250  # the store's limit for one branch name (255 - len(".lock"))
INDEX_BRANCH = "commit-index"


def _dot_is_unsafe(raw: bytes, i: int) -> bool:
    """Would keeping the dot at ``raw[i]`` make a name Git refuses?"""
    n = len(raw)
    return (
        (i > 0 and raw[i - 1] == 0x2E)
        or (i + 1 < n and raw[i + 1] == 0x2E)
        or i == n - 1
        or raw[i:] == b".lock"
    )


def escape(part: str) -> str:
    """Upstream's escaping of one field of a branch name (see the module)."""
    raw = part.encode("utf-8", "surrogatepass")
    out: list[str] = []
    for i, byte in enumerate(raw):
        if byte in _KEPT and not (byte == 0x2E and _dot_is_unsafe(raw, i)):
            out.append(chr(byte))
        else:
            out.append(f"_{byte:02x}")
    return "".join(out)


def unescape(part: str) -> str:
    """Inverse of :func:`escape`; ValueError for text it cannot have made."""
    if not _ESCAPED_PART.fullmatch(part):
        raise ValueError(f"not an escaped name: {part!r}")
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), part).encode("latin-1")
    return raw.decode("utf-8", "surrogatepass")


def _canonical_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and str(int(text)) == text


def _bounded(name: str, prefix: str) -> str:
    """``name``, or when it is longer than a branch name may be (250
    bytes; long escaped ref names get there) a stable hashed stand-in
    ``<prefix>-h-<hex>`` that the parsers refuse rather than misread."""
    if len(name) <= MAX_BRANCH:
        return name
    return f"{prefix}-h-{hashlib.sha256(name.encode()).hexdigest()[:48]}"


def target_sub(ident: TargetId) -> str:
    """The target part of history and index names: ``pr-3``,
    ``ref-heads-feature_2fx`` (the first ref component, then the rest
    joined by ``/``, each escaped)."""
    if isinstance(ident, PRId):
        return f"pr-{ident.number}"
    first, *rest = ident.name or ("",)
    return f"ref-{escape(first)}-{escape('/'.join(rest))}"


def parse_target_sub(repo: Repo, sub: str) -> TargetId:
    """Inverse of :func:`target_sub` (ValueError if it is not one)."""
    fields = sub.split("-")
    if len(fields) == 2 and fields[0] == "pr" and _canonical_number(fields[1]):
        return PRId(repo, int(fields[1]))
    if len(fields) == 3 and fields[0] == "ref" and fields[1]:
        first = unescape(fields[1])
        rest = unescape(fields[2])
        name = (first, *rest.split("/")) if rest else (first,)
        if all(name):
            return RefId(repo, name)
    raise ValueError(f"not a target: {sub!r}")


def history_branch(ident: TargetId) -> str:
    """``status-<user>-<repo>-<sub>``: the target's history branch (A.4)."""
    repo = ident.repo
    name = f"{HISTORY_PREFIX}-{escape(repo.user)}-{escape(repo.name)}-{target_sub(ident)}"
    return _bounded(name, HISTORY_PREFIX)


def parse_history_branch(name: str) -> TargetId:
    """Inverse of :func:`history_branch`; ValueError if ``name`` is not
    one (or is the hashed stand-in of an overlong one)."""
    fields = name.split("-")
    if len(fields) < 4 or fields[0] != HISTORY_PREFIX:
        raise ValueError(f"not a history branch: {name!r}")
    try:
        repo = Repo(unescape(fields[1]), unescape(fields[2]))
        return parse_target_sub(repo, "-".join(fields[3:]))
    except ValueError:
        raise ValueError(f"not a history branch: {name!r}") from None


def result_branch(job: JobSpec, sha: str) -> str:
    """The run's result branch: ``shell-of-<label>-on-<sha>`` where the
    label is the escaped job name and its definition hash (B.5), so an
    edited job is a new run and never reuses a stale result."""
    name = f"shell-of-{escape(job.name)}-{job.definition_hash}-on-{sha}"
    return _bounded(name, "shell-of")


def index_path(repo: Repo, sha: str, ident: TargetId) -> tuple[str, ...]:
    """Where ``commit-index`` records a build of ``sha`` for ``ident``."""
    return (repo.user, repo.name, "commit", sha, target_sub(ident))


def target_label(ident: TargetId) -> str:
    """How commit messages name a target, as upstream: ``me/p/pr/5``,
    ``me/p/ref/heads/master``."""
    if isinstance(ident, PRId):
        return f"{ident.repo}/pr/{ident.number}"
    return f"{ident.repo}/ref/{'/'.join(ident.name)}"


def target_path(ident: TargetId) -> str:
    """The target page's URL path, each component percent-encoded (a ref
    may hold ``#``, ``?`` or ``%``)."""
    repo = ident.repo
    head = f"/{quote(repo.user, safe='')}/{quote(repo.name, safe='')}"
    if isinstance(ident, PRId):
        return f"{head}/pr/{ident.number}"
    return f"{head}/ref/{'/'.join(quote(p, safe='') for p in ident.name)}"


def target_url(web_ui: str, repo: Repo, sha: str, job: str) -> str:
    """The status ``target_url`` (A.3 step 3):
    ``<web-ui>/<user>/<repo>/commit/<sha>?test=<job>`` with one slash
    whatever ``web_ui`` ends with."""
    base = web_ui.rstrip("/")
    user, name = quote(repo.user, safe=""), quote(repo.name, safe="")
    return f"{base}/{user}/{name}/commit/{sha}?test={quote(job, safe='')}"


__all__ = [
    "HISTORY_PREFIX",
    "INDEX_BRANCH",
    "escape",
    "history_branch",
    "index_path",
    "parse_history_branch",
    "parse_target_sub",
    "result_branch",
    "target_label",
    "target_path",
    "target_sub",
    "target_url",
    "unescape",
]
