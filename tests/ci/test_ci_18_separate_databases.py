"""CI-18: a `source` repository that has a `github-metadata` branch (a
DataKit store, very likely the CI's own) is refused at start with a message
about the feedback loop; nothing is written."""

from __future__ import annotations

from pathlib import Path

from datakit.client import connect
from tests.ci.cihelpers import META, CIProcess, CIStack, make_source_repo, read
from tests.gitrepo import git
from tests.operations.procs import datakit_process


def refused(ci: CIProcess) -> str:
    try:
        status = ci.wait_exit()
    finally:
        ci.kill()
    log = ci.log
    assert status != 0, log
    assert "Traceback" not in log, log
    assert "github-metadata" in log, log
    assert "loop" in log.lower() or "forever" in log.lower(), log  # why it is refused
    return log


def test_ci_18_source_with_a_metadata_branch(ci_stack: CIStack) -> None:
    stack = ci_stack
    store = stack.tmp / "store"
    make_source_repo(store)
    git(store, "branch", META)
    stack.configure([{"name": "ok", "run": ["true"]}], source=store)
    before = stack.meta.head()
    refused(stack.start(wait=False))
    assert stack.meta.head() == before
    assert read(before.tree(), "me/p/.monitor") is None  # type: ignore[union-attr]


def test_ci_18_source_is_the_ci_database(tmp_path: Path) -> None:
    db = tmp_path / "db.git"
    with datakit_process("--git", str(db)) as (port, _metrics, _proc):
        address = f"tcp://127.0.0.1:{port}"
        with connect(address, timeout=30) as conn:
            with conn.branch(META).transaction() as t:
                t.make_dirs("me/p/ref/heads/master")
                t.create_file("me/p/ref/heads/master/head", b"0" * 40 + b"\n")
                t.commit("a bridge was here")
            before = conn.branch(META).head()
            stack = CIStack(tmp_path, address, conn, db, "")
            stack.configure([{"name": "ok", "run": ["true"]}], source=db)
            refused(stack.start(wait=False))
            assert conn.branch(META).head() == before
