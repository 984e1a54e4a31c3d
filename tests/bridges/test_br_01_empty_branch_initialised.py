"""BR-1: the bridge initialises an empty github-metadata branch."""

from __future__ import annotations

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    datakit_server,
    files,
    github_bridge,
    history,
    metadata,
    wait_file,
)

README = {"README.md": b"### DataKit -- GitHub bridge\n"}


def test_br_01_empty_branch_initialised(fake_github: FakeGitHub) -> None:
    with datakit_server() as address, metadata(address) as (_conn, branch):
        assert branch.head() is None
        with github_bridge(*bridge_args(address, fake_github.base_url)) as bridge:
            wait_file(branch, "u/r/.monitor", b"")
            bridge.wait_steps(1)
        commits = list(reversed(history(branch)))
        assert [c.message for c in commits] == ["Initial commit\n", "initial commit\n"]
        assert commits[0].parents == []
        assert files(commits[0].tree(), "") == README
        assert files(commits[1].tree(), "") == {**README, "u/r/.monitor": b""}
        # a restart finds everything in place: no commit at all
        head = branch.head()
        with github_bridge(*bridge_args(address, fake_github.base_url)) as bridge:
            bridge.wait_steps(1)
        assert branch.head() == head
