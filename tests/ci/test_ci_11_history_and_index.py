"""CI-11: after m1 and m2 passed on master, `status-me-p-ref-heads-master`
records both evaluations in upstream's format, and `commit-index` points
from m1 to a history commit."""

from __future__ import annotations

import json

from tests.ci.cihelpers import META, CIStack, all_commits, first_parent, read

HISTORY = "status-me-p-ref-heads-master"


def test_ci_11_history_and_index(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "ok", "run": ["true"]}])
    stack.start()
    stack.wait_status(m1, "ok", "success")
    m2 = stack.commit("m2")
    stack.wait_status(m2, "ok", "success")
    stack.wait_history(HISTORY, m2, {"ok": "success"})

    history = list(reversed(first_parent(stack.conn.branch(HISTORY))))  # oldest first
    assert history, stack.conn.branches()
    sources = [c.tree().read_file("source-commit").strip().decode() for c in history]
    firsts = [s for i, s in enumerate(sources) if i == 0 or sources[i - 1] != s]
    assert firsts == [m1, m2], sources
    meta = {c.id for c in all_commits(stack.conn.branch(META).head())}
    last_of: dict[str, dict[str, object]] = {}
    for c, source in zip(history, sources, strict=True):
        tree = c.tree()
        metadata = tree.read_file("metadata-commit").strip().decode()
        assert metadata in meta, (c.message, metadata)
        assert read(stack.conn.commit(metadata).tree(), "me/p/ref/heads/master/head") == (
            f"{source}\n".encode()
        )
        output = json.loads(tree.read_file("job/ok/output"))
        assert set(output) == {"result", "logs"}, output
        assert set(output["result"]) == {"status", "descr"}, output
        assert output["result"]["status"] in ("pending", "success", "failure"), output
        assert read(tree, "summary") is not None
        last_of[source] = output
    for sha in (m1, m2):
        assert last_of[sha]["result"]["status"] == "success", last_of[sha]  # type: ignore[index]
    logs = last_of[m1]["logs"]
    assert isinstance(logs, dict) and {"title", "branch", "commit", "failed"} <= set(logs), logs
    assert history[-1].tree().read_file("summary").strip() == b"success"

    index = stack.conn.branch("commit-index").head()
    assert index is not None
    pointer = read(index.tree(), f"me/p/commit/{m1}/ref-heads-master")
    assert pointer is not None, index.tree().read_dir("me/p/commit")
    entry = pointer.strip().decode()
    assert entry in {c.id for c in history}
    assert stack.conn.commit(entry).tree().read_file("source-commit").strip() == m1.encode()
