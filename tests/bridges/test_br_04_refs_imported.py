"""BR-4: refs are imported, annotated tags peeled to their commit."""

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


def test_br_04_refs_imported_annotated_tags_peeled(fake_github: FakeGitHub) -> None:
    fake = fake_github
    c1 = fake.push("u/r", "master")
    c2 = fake.push("u/r", "heads/feature/x")
    fake.tag("u/r", "v1", c1)
    t9 = fake.tag("u/r", "v2", c2, annotated=True)
    assert t9 not in (c1, c2)
    with datakit_server() as address, metadata(address) as (_conn, branch):
        with github_bridge(*bridge_args(address, fake.base_url)):
            head = wait_for(branch, lambda t: read(t, "u/r/ref/tags/v2/head") is not None)
        got = files(head.tree())
        assert {k: v for k, v in got.items() if k.startswith("ref/")} == {
            "ref/heads/master/head": f"{c1}\n".encode(),
            "ref/heads/feature/x/head": f"{c2}\n".encode(),
            "ref/tags/v1/head": f"{c1}\n".encode(),
            "ref/tags/v2/head": f"{c2}\n".encode(),
        }
        assert not any(t9 in k or t9.encode() in v for k, v in got.items())
