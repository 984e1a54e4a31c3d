"""Fetched objects are checked as `git fetch` with transfer.fsckObjects does
(issue #8 point 5): a real `git daemon` serves repositories made with
`git hash-object --literally`; each bad one is refused with a reason, and
nothing of it is stored."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.store import FetchError, Store
from tests.gitdaemon import git_daemon
from tests.gitrepo import TreeEntry, git, literal, literal_tree

IDENT = b"t <t@example.com> 1483228800 +0000"


def commit(tree_sha: str, headers: bytes | None = None) -> bytes:
    if headers is None:
        headers = b"author " + IDENT + b"\ncommitter " + IDENT + b"\n"
    return b"tree " + tree_sha.encode() + b"\n" + headers + b"\nmessage\n"


# name -> (how to build the branch head, a fragment of the expected reason)
def _cases(repo: Path) -> dict[str, tuple[str, str]]:
    blob = literal(repo, "blob", b"data\n")
    sub = literal_tree(repo, [(b"100644", b"f", blob)])

    def with_tree(*entries: TreeEntry) -> str:
        return literal(repo, "commit", commit(literal_tree(repo, list(entries))))

    good_tree = literal_tree(repo, [(b"100644", b"a", blob)])
    committer = b"committer " + IDENT + b"\n"

    def with_headers(headers: bytes) -> str:
        return literal(repo, "commit", commit(good_tree, headers))

    def gitmodules(text: bytes, name: bytes = b".gitmodules") -> str:
        return with_tree((b"100644", name, literal(repo, "blob", text)))

    sm = b'[submodule "m"]\n\tpath = m\n'
    return {
        "gitmodules-name": (
            gitmodules(b'[submodule "../../hooks"]\n\tpath = m\n\turl = https://e/x\n'),
            "bad submodule name",
        ),
        "gitmodules-url": (gitmodules(sm + b"\turl = -upload-pack=x\n"), "bad url"),
        "gitmodules-url-newline": (gitmodules(sm + b"\turl = https://e%0a/x\n"), "bad url"),
        "gitmodules-path": (
            gitmodules(b'[submodule "m"]\n\tpath = -m\n\turl = https://e/x\n'),
            "bad path",
        ),
        "gitmodules-update": (
            gitmodules(sm + b"\turl = https://e/x\n\tupdate = !rm -rf /\n"),
            "runs a command",
        ),
        "gitmodules-ntfs": (gitmodules(sm + b"\turl = -x\n", b"GITMOD~1"), "bad url"),
        # NTFS opens these as .gitmodules too: short names ~1 to ~4, and the
        # hashed fall-back short name (git's is_ntfs_dotgitmodules).
        "gitmodules-ntfs-3": (gitmodules(sm + b"\turl = -x\n", b"gitmod~3"), "bad url"),
        "gitmodules-ntfs-hashed": (gitmodules(sm + b"\turl = -x\n", b"gi7eba~1"), "bad url"),
        "gitmodules-link-ntfs": (
            with_tree((b"120000", b"GI7EB~12", blob)),
            ".gitmodules cannot be a symbolic link",
        ),
        "gitmodules-dir": (with_tree((b"40000", b".gitmodules", sub)), "is not a file"),
        "gitattributes-line": (
            gitmodules(b"*" + b"x" * 3000 + b" text\n", b".gitattributes"),
            "longer than 2048",
        ),
        "dotgit": (with_tree((b"100644", b".git", blob)), "reserves the name .git"),
        "dotgit-case": (with_tree((b"40000", b".GIT", sub)), "reserves the name .git"),
        "dotgit-ntfs": (with_tree((b"100644", b"git~1", blob)), "reserves the name .git"),
        "dotdot": (with_tree((b"40000", b"..", sub)), "not a file name"),
        "slash": (with_tree((b"100644", b"a/b", blob)), "cannot contain '/'"),
        "gitmodules-link": (
            with_tree((b"120000", b".gitmodules", blob)),
            ".gitmodules cannot be a symbolic link",
        ),
        "duplicate": (with_tree((b"100644", b"a", blob), (b"100644", b"a", blob)), "duplicate"),
        "duplicate-dir": (with_tree((b"100644", b"a", blob), (b"40000", b"a", sub)), "duplicate"),
        "unsorted": (with_tree((b"100644", b"b", blob), (b"100644", b"a", blob)), "not sorted"),
        "zero-padded-mode": (with_tree((b"040000", b"d", sub)), "zero-padded"),
        "bad-mode": (with_tree((b"100664", b"a", blob)), "bad file mode"),
        "no-author": (with_headers(committer), "missing author"),
        "bad-ident": (with_headers(b"author t <t> 01 +0000\n" + committer), "malformed author"),
        "bad-email": (with_headers(b"author t t@x> 1 +0000\n" + committer), "malformed author"),
        "nul-in-header": (
            with_headers(b"author " + IDENT + b"\n" + committer[:-1] + b"\0\n"),
            "NUL in header",
        ),
    }  # fmt: skip


@pytest.fixture(scope="module")
def bad_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A daemon serving one repository with a branch per case, plus `good`."""
    repo = tmp_path_factory.mktemp("bad") / "bad.git"
    git(repo.parent, "init", "-q", "--bare", str(repo))
    reasons = {}
    for name, (head, reason) in _cases(repo).items():
        git(repo, "update-ref", f"refs/heads/{name}", head)
        reasons[name] = reason
    blob = literal(repo, "blob", b"fine\n")
    sub = literal_tree(repo, [(b"100755", b"run", blob)])
    fine = literal_tree(
        repo,
        [
            (b"100644", b"a-b", blob),
            (b"100644", b"a.b", blob),
            (b"40000", b"a", sub),  # sorted as "a/": after "a.b"
            (b"120000", b"link", blob),
            (b"160000", b"module", "1" * 40),  # a submodule commit: never fetched
        ],
    )
    good = literal(repo, "commit", commit(fine))
    git(repo, "update-ref", "refs/heads/good", good)
    with git_daemon(repo.parent) as url:
        yield url + "bad.git", reasons


def _object_files(store: Store) -> list[str]:
    assert store.path is not None
    found = []
    for root, _, files in os.walk(os.path.join(store.path, "objects")):
        found += [os.path.join(root, f) for f in files]
    return sorted(found)


CASES = [
    "gitmodules-name", "gitmodules-url", "gitmodules-url-newline", "gitmodules-path",
    "gitmodules-update",
    "gitmodules-ntfs", "gitmodules-ntfs-3", "gitmodules-ntfs-hashed", "gitmodules-link-ntfs",
    "gitmodules-dir", "gitattributes-line",
    "dotgit", "dotgit-case", "dotgit-ntfs", "dotdot", "slash", "gitmodules-link", "duplicate",
    "duplicate-dir", "unsorted", "zero-padded-mode", "bad-mode", "no-author", "bad-ident",
    "bad-email", "nul-in-header",
]  # fmt: skip


# git's fetch lets a group-writable mode (100664) through, `git fsck --strict`
# does not: the store holds only what the strict check accepts.
@pytest.mark.parametrize("case", [c for c in CASES if c != "bad-mode"])
def test_git_itself_refuses(
    case: str, bad_remote: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """The cases are real: `git fetch` with transfer.fsckObjects refuses each."""
    url, _ = bad_remote
    git(tmp_path, "init", "-q", "--bare", "r.git")
    with pytest.raises(subprocess.CalledProcessError):
        git(tmp_path / "r.git", "-c", "transfer.fsckObjects=true", "fetch", url, case)


@pytest.mark.parametrize("case", CASES)
def test_bad_objects_are_refused(
    case: str, store: Store, bad_remote: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, reasons = bad_remote
    before = _object_files(store) if store.on_disk else []
    with pytest.raises(FetchError) as e:
        store.fetch(url, case)
    message = str(e.value)
    assert message.startswith(f"error: cannot fetch {url}: "), message
    assert reasons[case] in message, message
    if store.on_disk:
        assert _object_files(store) == before  # nothing written, no temporary left
        git(Path(store.path or ""), "fsck", "--strict")
    # The same server's good branch is fetched fine afterwards.
    head = store.fetch(url, "good")
    assert store.tree(store.commit_info(head).tree).read(("a", "run")) == b"fine\n"
    if store.on_disk:
        git(Path(store.path or ""), "fsck", "--strict")


def test_git_accepts_the_good_branch(
    bad_remote: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, _ = bad_remote
    git(tmp_path, "init", "-q", "--bare", "r.git")
    git(tmp_path / "r.git", "-c", "transfer.fsckObjects=true", "fetch", url, "good")
