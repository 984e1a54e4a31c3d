"""Whatever others write into github-metadata must not crash the CI nor
start a commit loop (COMMON rules; issue 11 "bad input"): junk PRs and refs
are skipped, a status of the CI's that someone overwrote is put back once,
and the branch goes quiet."""

from __future__ import annotations

import time

from datakit.client import Branch
from tests.ci.cihelpers import CIStack, status_dir, statuses


def client_commit(branch: Branch, writes: dict[str, bytes], message: str) -> None:
    with branch.transaction() as t:
        for path, data in writes.items():
            t.make_dirs(path.rsplit("/", 1)[0])
            t.create_or_replace_file(path, data)
        t.commit(message)


def settled(stack: CIStack, m1: str, runs: int) -> None:
    """The CI still works (a new commit is tested, once), never crashed,
    and github-metadata goes quiet with no status left pending."""
    m2 = stack.commit(f"m{runs}")
    stack.wait_status(m2, "ok", "success")
    assert stack.runs_of("ok") == runs  # nothing ran twice
    assert stack.ci is not None
    assert stack.ci.proc.poll() is None, stack.ci.tail()
    assert "Traceback" not in stack.ci.log, stack.ci.log
    quiet = stack.meta.head()
    time.sleep(3)  # a loop would have committed many times by now
    assert stack.meta.head() == quiet, stack.meta.head().message  # type: ignore[union-attr]
    assert quiet is not None
    got = statuses(quiet.tree())
    assert {k for k, s in got.items() if s.state == "pending"} == set(), got
    assert set(got) == {(m1, "ok"), (m2, "ok")}, got


def test_ci_hostile_refs_and_statuses(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "ok", "run": stack.counting("ok")}])
    stack.start()
    good = stack.wait_status(m1, "ok", "success")
    base = status_dir(m1, "ok")
    client_commit(stack.meta, {
        "me/p/ref/heads/junk/head": b"\xff\xfe binary\n",
        "me/p/ref/heads/short/head": b"not a sha\n",
        f"{base}/state": b"failure\n",
        f"{base}/description": b"someone else was here\n",
    }, "junk")
    stack.wait_status(m1, "ok", lambda s: s == good)  # put back
    settled(stack, m1, 2)


def test_ci_hostile_prs(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "ok", "run": stack.counting("ok")}])
    stack.start()
    stack.wait_status(m1, "ok", "success")
    client_commit(stack.meta, {
        "me/p/pr/not-a-number/head": f"{m1}\n".encode(),
        "me/p/pr/not-a-number/state": b"open\n",
        "me/p/pr/not-a-number/owner": b"mallory\n",
        "me/p/pr/7/head": b"not a sha\n",
        "me/p/pr/7/state": b"open\n",
        "me/p/pr/7/owner": b"mallory\n",
    }, "junk")
    settled(stack, m1, 2)
