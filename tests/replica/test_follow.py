"""A replica follows a primary's commits, and head.live fires on it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from datakit.client import AGAIN, Commit
from tests.replica.helpers import client, commit, heads, metric, primary, replica, wait_for


@pytest.mark.parametrize("kind", ["memory", "git"])
def test_a_replica_follows_50_quick_commits_and_its_head_live_fires(
    kind: str, tmp_path: Path
) -> None:
    primary_args = ("--git", str(tmp_path / "primary.git")) if kind == "git" else ()
    replica_args = ("--git", str(tmp_path / "replica.git")) if kind == "git" else ()
    with primary(*primary_args) as (p, _):
        url = f"git://127.0.0.1:{p['git']}/"
        with client(p["9p"]) as writer, replica(url, *replica_args) as (r, _):
            first = commit(writer, "master", "f0", b"0")
            with client(r["9p"]) as reader:
                wait_for(lambda: heads(r["9p"]).get("master") == first, "the first commit")
                seen: list[str] = []

                def until_last(head: Commit | None) -> str | object:
                    assert head is not None
                    seen.append(head.id)
                    return head.id if head.message == "write f49\n" else AGAIN

                result: list[object] = []
                watcher = threading.Thread(
                    target=lambda: result.append(
                        reader.branch("master").wait_for_head(until_last, timeout=60)
                    )
                )
                watcher.start()
                wait_for(lambda: seen, "the head.live reader to start")
                last = first
                for i in range(1, 50):
                    last = commit(writer, "master", f"f{i}", str(i).encode())
                watcher.join(90)
                assert not watcher.is_alive()

                assert result == [last]  # head.live on the replica saw the last commit
                assert seen[0] == first  # ... starting from the first: it saw changes
                tree = reader.branch("master").head().tree()  # type: ignore[union-attr]
                assert tree.read_dir("") == sorted(f"f{i}" for i in range(50))
                assert tree.read_file("f49") == b"49"
                assert heads(r["9p"]) == heads(p["9p"])
            updates = "datakit_replica_updates_total"
            assert metric(r["metrics"], updates, kind="created") == 1
            assert metric(r["metrics"], updates, kind="fast-forward") >= 1
            assert metric(r["metrics"], updates, kind="forced") == 0


def test_branches_created_and_deleted_on_the_primary_are_on_the_replica(
    tmp_path: Path,
) -> None:
    with primary() as (p, _), client(p["9p"]) as writer:
        commit(writer, "master", "a", b"a")
        with replica(f"git://127.0.0.1:{p['git']}/") as (r, proc):
            wait_for(lambda: "master" in heads(r["9p"]), "master on the replica")
            feature = commit(writer, "feature", "b", b"b")
            wait_for(lambda: heads(r["9p"]).get("feature") == feature, "the new branch")
            writer.remove_branch("feature")
            wait_for(lambda: "feature" not in heads(r["9p"]), "the branch to go")
            assert heads(r["9p"]) == heads(p["9p"])
            assert list(heads(r["9p"])) == ["master"]
            deleted = metric(r["metrics"], "datakit_replica_updates_total", kind="deleted")
            assert deleted == 1
            proc.terminate()  # SIGTERM while following: a clean stop
            assert proc.wait(30) == 0
