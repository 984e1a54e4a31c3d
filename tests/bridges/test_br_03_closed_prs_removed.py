"""BR-3: closed PRs are not imported, and removed when they close."""

from __future__ import annotations

from tests.bridges.fakegithub import FakeGitHub
from tests.bridges.ghbridge import (
    bridge_args,
    datakit_server,
    files,
    github_bridge,
    metadata,
    read,
    wait_for,
)

AAA, BBB = "a" * 40, "b" * 40


def test_br_03_closed_prs_not_imported_and_removed(fake_github: FakeGitHub) -> None:
    fake = fake_github
    fake.push("u/r", "master")
    fake.open_pull("u/r", title="Fix", head="fix", head_sha=AAA, number=3)
    fake.open_pull("u/r", title="Old", head="old", head_sha=BBB, number=4)
    fake.close_pull("u/r", 4)
    fake.add_status("u/r", AAA, "success", "ci/other")
    c1 = fake.ref("u/r", "master")
    assert c1 is not None
    fake.add_status("u/r", c1, "success", "ci/master")
    fake.open_pull("u/r", title="Same as master", head="same", head_sha=c1, number=6)
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url, resync=1)):
            head = wait_for(branch, lambda t: read(t, f"u/r/commit/{AAA}/status/ci/other/state")
                            is not None)
            assert not any(k.startswith("pr/4") for k in files(head.tree()))
            fake.close_pull("u/r", 3)
            fake.delete_ref("u/r", "heads/fix")
            fake.close_pull("u/r", 6)
            fake.delete_ref("u/r", "heads/same")
            head = wait_for(branch, lambda t: read(t, "u/r/pr/3/head") is None
                            and read(t, "u/r/pr/6/head") is None)
            got = files(head.tree())
            assert not any(k.startswith(("pr/3", f"commit/{AAA}", "ref/heads/fix")) for k in got)
            assert "ref/heads/master/head" in got
            # a closed PR's head that a ref still points at keeps its statuses
            assert got[f"commit/{c1}/status/ci/master/state"] == b"success\n"
