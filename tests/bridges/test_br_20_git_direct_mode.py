"""BR-20: -d git:///PATH keeps github-metadata in a Git repository, no server."""

from __future__ import annotations

import subprocess
from pathlib import Path

from datakit.client import connect
from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    BRANCH,
    client_commit,
    github_bridge,
    read,
    wait_file,
    wait_for,
)


def test_br_20_git_direct_mode(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    fake.open_pull("u/r", title="Fix", head="fix", number=3)
    repo = tmp_path / "meta"
    args = ["-d", f"git://{repo}", "--github-url", fake.base_url, "-r", "u/r", "--no-resync",
            "-v"]
    with github_bridge(*args):
        with connect(repo, author="ci <ci@example.com>") as conn:
            branch = conn.branch(BRANCH)
            wait_for(branch, lambda t: read(t, "u/r/pr/3/title") == b"Fix\n")
            assert read(branch.head().tree(), "u/r/ref/heads/master/head") == f"{c1}\n".encode()  # type: ignore[union-attr]
            state = f"u/r/commit/{c1}/status/ci/datakit/test/state"
            client_commit(branch, {state: b"pending\n",
                                   state.replace("state", "description"): b"Running\n",
                                   state.replace("state", "target_url"): b"http://ci/x\n"})
            fake.wait_until(lambda: bool(fake.requests("POST", "/repos/u/r/statuses/*")))
            wait_file(branch, state, b"pending\n")
        (post,) = fake.requests("POST", "/repos/u/r/statuses/*")
        assert post.path == f"/repos/u/r/statuses/{c1}"
        assert post.body == {"state": "pending", "context": "ci/datakit/test",
                             "description": "Running", "target_url": "http://ci/x"}
    # a real Git repository: git reads the layout
    shown = subprocess.run(["git", "--git-dir", str(repo), "show",
                            f"{BRANCH}:u/r/pr/3/title"], capture_output=True, check=True)
    assert shown.stdout == b"Fix\n"
    subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"], check=True,
                   capture_output=True)
