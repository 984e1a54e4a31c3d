"""Branch names the ref layout must not misread: a branch may itself be
called `head` (stored at ref/heads/head/head), and one sync must then
settle, not commit forever (each commit woke the next sync)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.bridges.gitrefs import find_git_dir, read_refs
from datakit.bridges.local import sync_refs
from datakit.client import connect
from datakit.github.model import Repo
from tests.bridges.localbridge import make_repo
from tests.gitrepo import git

R = Repo("me", "p")


@pytest.mark.parametrize("branch", ["head", "feature/head", "head/x"])
def test_a_branch_called_head_is_stored_once_and_then_left_alone(
    tmp_path: Path, branch: str
) -> None:
    repo = make_repo(tmp_path / "p")
    git(repo, "branch", branch)
    refs = read_refs(find_git_dir(repo))
    with connect(str(tmp_path / "db")) as conn:
        outcomes = [sync_refs(conn, {R: refs}, ("heads",)) for _ in range(3)]
        head = conn.branch("github-metadata").head()
        assert head is not None
        stored = head.tree().read_file(f"me/p/ref/heads/{branch}/head")
    assert outcomes[1:] == ["unchanged", "unchanged"]
    assert stored.decode().strip() == git(repo, "rev-parse", branch)
