"""A primary whose history is rewritten (a branch reset to an unrelated
commit with `git update-ref`): the replica follows, forced, and warns."""

from __future__ import annotations

from pathlib import Path

from tests.gitrepo import blob, commit_tree, git, literal_tree
from tests.replica.helpers import (
    client,
    commit,
    heads,
    log_text,
    metric,
    primary,
    replica,
    wait_for,
)


def test_a_rewritten_branch_is_followed_with_a_warning(tmp_path: Path) -> None:
    store = tmp_path / "primary.git"
    log = tmp_path / "replica.log"
    with primary("--git", str(store)) as (p, _), open(log, "wb") as out:
        with client(p["9p"]) as writer:
            commit(writer, "master", "a", b"a")
            old = commit(writer, "master", "b", b"b")
        with replica(f"git://127.0.0.1:{p['git']}/", log=out) as (r, _):
            wait_for(lambda: heads(r["9p"]).get("master") == old, "the replica")
            # Another history, unrelated to the first, written by git itself.
            tree = literal_tree(store, [(b"100644", b"other", blob(store, b"rewritten\n"))])
            new = commit_tree(store, tree, "a new beginning")
            git(store, "update-ref", "refs/heads/master", new, old)
            wait_for(lambda: heads(r["9p"]).get("master") == new, "the forced update")
            with client(r["9p"]) as reader:
                tree_view = reader.branch("master").head().tree()  # type: ignore[union-attr]
                assert tree_view.read_dir("") == ["other"]
                assert tree_view.read_file("other") == b"rewritten\n"
            updates = "datakit_replica_updates_total"
            assert metric(r["metrics"], updates, kind="forced") == 1
            warned = [line for line in log_text(log).splitlines() if "rewrote" in line]
            assert len(warned) == 1
            assert "WARNING" in warned[0]
            assert all(word in warned[0] for word in ("branch master", old, new))
