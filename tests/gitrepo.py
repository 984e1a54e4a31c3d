"""The real `git` binary for tests: a neutral environment and the few object
builders the tests use (including `hash-object --literally`, which writes
objects git itself would refuse to make)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# No user or system configuration, a fixed identity and date: the same
# objects on any machine.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_AUTHOR_DATE": "2017-01-01T00:00:00 +0000",
    "GIT_COMMITTER_DATE": "2017-01-01T00:00:00 +0000",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
}

TreeEntry = tuple[bytes, bytes, str]  # (mode, name, sha), as stored in a tree object


def git_bytes(repo: Path | str | None, *args: str, input: bytes | None = None) -> bytes:
    """Run `git ARGS` in `repo` (a bare repository, a work tree, or any
    directory; None: the current one); its stdout as is. Fails on an error."""
    return subprocess.run(
        ["git", *args], cwd=repo, input=input, capture_output=True, check=True, env=GIT_ENV
    ).stdout


def git(repo: Path | str | None, *args: str, input: bytes | None = None) -> str:
    """`git_bytes`, decoded and stripped: for commands that print ids or lines."""
    return git_bytes(repo, *args, input=input).decode().strip()


def init_bare(repo: Path) -> Path:
    git(None, "init", "-q", "--bare", str(repo))
    return repo


def blob(repo: Path, data: bytes) -> str:
    return git(repo, "hash-object", "-w", "--stdin", input=data)


def tree_body(entries: list[TreeEntry]) -> bytes:
    """The bytes of a tree object holding exactly these entries, in this order."""
    return b"".join(mode + b" " + name + b"\0" + bytes.fromhex(sha) for mode, name, sha in entries)


def literal(repo: Path, kind: str, body: bytes) -> str:
    """Store `body` as an object of `kind` without any of git's checks."""
    return git(repo, "hash-object", "--literally", "-t", kind, "-w", "--stdin", input=body)


def literal_tree(repo: Path, entries: list[TreeEntry]) -> str:
    """A tree object written by git without any check, entries as given."""
    return literal(repo, "tree", tree_body(entries))


def commit_tree(repo: Path, tree: str, message: str = "m", branch: str | None = None) -> str:
    """A parentless commit of `tree`; with `branch`, that branch is set to it."""
    commit = git(repo, "commit-tree", tree, "-m", message)
    if branch is not None:
        git(repo, "update-ref", f"refs/heads/{branch}", commit)
    return commit


# A repository git wrote with entries DataKit shows and keeps as they are
# (issue #8, points 3 and 4), for the client and the kernel-client tests.
SUB = "0123456789abcdef0123456789abcdef01234567"  # a commit of another repository
RAW_NAME = b"\xff\xfe-latin1"
RAW_TARGET = b"caf\xe9/\xff"  # latin-1, as an old system would write it


def git_written_repo(repo: Path) -> Path:
    """A bare repository whose master, committed by git, holds a file with a
    Latin-1 name, a symlink with a Latin-1 target, a submodule ``sub``, and
    a plain file ``plain``."""
    init_bare(repo)
    hello, target = blob(repo, b"hello\n"), blob(repo, RAW_TARGET)
    lines = [
        b"100644 blob %s\t%s" % (hello.encode(), RAW_NAME),
        b"120000 blob %s\tbadlink" % target.encode(),
        b"160000 commit %s\tsub" % SUB.encode(),
        b"100644 blob %s\tplain" % hello.encode(),
    ]
    tree = git(repo, "mktree", "-z", input=b"\0".join(lines) + b"\0")
    commit_tree(repo, tree, "by git", branch="master")
    return repo
