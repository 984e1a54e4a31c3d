"""Mirror: fetching exact commits from a project's source into a bare mirror,
and fresh checkouts of them, with real git repositories."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from datakit.ci.mirror import Mirror, SourceError, remove_stale_checkouts
from datakit.github.model import PRId, RefId, Repo
from tests.gitdaemon import git_daemon
from tests.gitrepo import git

REPO = Repo("me", "p")


def commit(work: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    work = tmp_path / "src"
    git(None, "init", "-q", "-b", "master", str(work))
    return work


def refs(mirror: Mirror, prefix: str = "") -> list[str]:
    out = git(mirror.path, "for-each-ref", "--format=%(refname)", *([prefix] if prefix else []))
    return out.splitlines()


async def test_ensure_and_checkout_exact_commit(tmp_path: Path, source: Path) -> None:
    m1 = commit(source, {"README": "one\n", "dir/a": "a\n"}, "m1")
    m2 = commit(source, {"README": "two\n", "b": "b\n"}, "m2")
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    await mirror.ensure(m1, RefId(REPO, ("heads", "master")))
    assert mirror.path == tmp_path / "work" / "mirrors" / "me-p.git"
    async with mirror.checkout(m1) as path:
        assert (path / "README").read_text() == "one\n"
        assert (path / "dir" / "a").read_text() == "a\n"
        assert not (path / "b").exists()  # exactly m1, not the branch's head
        assert git(path, "rev-parse", "HEAD") == m1
        assert git(path, "status", "--porcelain") == ""
        assert path.is_relative_to(tmp_path / "work" / "checkouts")
        seen = path
    assert not seen.exists()
    # Nothing under refs/heads or refs/tags of the mirror: only refs/ci/.
    assert all(r.startswith("refs/ci/") for r in refs(mirror))
    assert f"refs/ci/commits/{m1}" in refs(mirror)
    await mirror.ensure(m2)
    async with mirror.checkout(m2) as path:
        assert (path / "README").read_text() == "two\n"
        assert (path / "b").exists()


async def test_unreachable_commit_is_fetched_by_id(tmp_path: Path, source: Path) -> None:
    commit(source, {"f": "1\n"}, "base")
    gone = commit(source, {"f": "2\n"}, "force-pushed away")
    git(source, "reset", "-q", "--hard", "HEAD~1")
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    await mirror.ensure(gone)
    async with mirror.checkout(gone) as path:
        assert (path / "f").read_text() == "2\n"


async def test_ensure_of_a_present_commit_does_not_need_the_source(
    tmp_path: Path, source: Path
) -> None:
    m1 = commit(source, {"f": "x\n"}, "m1")
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    await mirror.ensure(m1)
    (source / ".git").rename(tmp_path / "elsewhere")  # the source vanishes
    await mirror.ensure(m1)  # served from the mirror
    async with mirror.checkout(m1) as path:
        assert (path / "f").read_text() == "x\n"


async def test_missing_commit_is_a_source_error(tmp_path: Path, source: Path) -> None:
    commit(source, {"f": "x\n"}, "m1")
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    with pytest.raises(SourceError) as info:
        await mirror.ensure("0123456789abcdef0123456789abcdef01234567")
    message = str(info.value)
    assert "\n" not in message
    assert "0123456789abcdef0123456789abcdef01234567" in message
    assert "not in source" in message


async def test_vanished_source_is_a_source_error(tmp_path: Path, source: Path) -> None:
    m1 = commit(source, {"f": "x\n"}, "m1")
    mirror = Mirror(tmp_path / "work", REPO, str(tmp_path / "no-such-repo"))
    with pytest.raises(SourceError) as info:
        await mirror.ensure(m1)
    message = str(info.value)
    assert "\n" not in message
    assert "cannot be read" in message
    assert str(tmp_path / "no-such-repo") in message


async def test_bad_commit_ids_are_refused(tmp_path: Path, source: Path) -> None:
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    for bad in ("master", "--upload-pack=touch /tmp/x", "ABCDEF" * 7, ""):
        with pytest.raises(SourceError, match="not a commit id"):
            await mirror.ensure(bad)
        with pytest.raises(SourceError, match="not a commit id"):
            async with mirror.checkout(bad):
                pass


async def test_server_refusing_unadvertised_commits(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over git:// with protocol v0, upload-pack refuses a commit that is not
    the tip of a ref: the mirror fetches the target's ref (a PR's
    pull/<n>/head, a branch) or all heads and tags instead, into refs/ci/
    only."""
    older = commit(source, {"f": "older\n"}, "older")
    commit(source, {"f": "tip\n"}, "tip")
    git(source, "tag", "v1", older)
    pr_base = commit(source, {"f": "pr base\n"}, "pr base")
    commit(source, {"f": "pr tip\n"}, "pr tip")
    git(source, "update-ref", "refs/pull/5/head", "HEAD")
    git(source, "reset", "-q", "--hard", "HEAD~3")  # master back to "tip"
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'protocol.version'='0'")
    with git_daemon(source) as url:
        mirror = Mirror(tmp_path / "work", REPO, url)
        with pytest.raises(SourceError, match="not in source"):
            await mirror.ensure("0123456789abcdef0123456789abcdef01234567")
        # A PR's non-tip commit: through pull/5/head.
        await mirror.ensure(pr_base, PRId(REPO, 5))
        assert "refs/ci/pull/5/head" in refs(mirror)
        # A branch's older commit: through the branch's ref.
        await mirror.ensure(older, RefId(REPO, ("heads", "master")))
        assert "refs/ci/heads/master" in refs(mirror)
    async with mirror.checkout(pr_base) as path:
        assert (path / "f").read_text() == "pr base\n"
    async with mirror.checkout(older) as path:
        assert (path / "f").read_text() == "older\n"
    assert refs(mirror, "refs/heads") == []
    assert refs(mirror, "refs/tags") == []


async def test_fallback_to_all_heads_and_tags(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tagged = commit(source, {"f": "tagged\n"}, "tagged")
    git(source, "tag", "-a", "-m", "release", "v1", tagged)
    commit(source, {"f": "after\n"}, "after")
    git(source, "reset", "-q", "--hard", "HEAD~1")
    git(source, "checkout", "-q", "-b", "other")
    on_other = commit(source, {"g": "other\n"}, "on other")
    commit(source, {"g": "other 2\n"}, "on other 2")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'protocol.version'='0'")
    with git_daemon(source) as url:
        mirror = Mirror(tmp_path / "work", REPO, url)
        await mirror.ensure(on_other)  # no target given: every head
    assert "refs/ci/heads/other" in refs(mirror)
    assert "refs/ci/tags/v1" in refs(mirror)
    assert refs(mirror, "refs/heads") == [] and refs(mirror, "refs/tags") == []
    async with mirror.checkout(on_other) as path:
        assert (path / "g").read_text() == "other\n"


async def test_checkout_is_removed_on_error_and_cancellation(tmp_path: Path, source: Path) -> None:
    m1 = commit(source, {"f": "x\n"}, "m1")
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    await mirror.ensure(m1)
    seen: list[Path] = []
    with pytest.raises(ZeroDivisionError):
        async with mirror.checkout(m1) as path:
            seen.append(path)
            (path / "readonly").mkdir()
            (path / "readonly" / "file").write_text("x")
            (path / "readonly").chmod(0o500)  # a job that locks its files
            raise ZeroDivisionError
    with trio.move_on_after(0.5) as scope:
        async with mirror.checkout(m1) as path:
            seen.append(path)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert len(seen) == 2
    assert not any(p.exists() for p in seen)
    assert list(mirror.checkouts.iterdir()) == []


async def test_checkout_of_a_commit_not_fetched(tmp_path: Path, source: Path) -> None:
    m1 = commit(source, {"f": "x\n"}, "m1")
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    with pytest.raises(SourceError, match="cannot check out"):
        async with mirror.checkout(m1):
            pass
    assert list(mirror.checkouts.iterdir()) == []


async def test_concurrent_ensures_and_checkouts(tmp_path: Path, source: Path) -> None:
    shas = [commit(source, {"n": f"{i}\n"}, f"c{i}") for i in range(6)]
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    contents: dict[str, str] = {}

    async def one(sha: str) -> None:
        await mirror.ensure(sha, RefId(REPO, ("heads", "master")))
        async with mirror.checkout(sha) as path:
            await trio.sleep(0.05)  # all checkouts exist at once
            contents[sha] = (path / "n").read_text()

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for sha in shas:
                nursery.start_soon(one, sha)
    assert contents == {sha: f"{i}\n" for i, sha in enumerate(shas)}
    assert git(mirror.path, "fsck", "--no-progress") == ""


def test_remove_stale_checkouts(tmp_path: Path) -> None:
    assert remove_stale_checkouts(tmp_path) == 0
    (tmp_path / "checkouts" / "a" / "b").mkdir(parents=True)
    (tmp_path / "checkouts" / "file").write_text("x")
    assert remove_stale_checkouts(tmp_path) == 2
    assert list((tmp_path / "checkouts").iterdir()) == []


def test_mirror_path_is_escaped(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, Repo("a_b", "c-d"), "/nowhere")
    assert mirror.path == tmp_path / "mirrors" / "a_5fb-c_2dd.git"


async def test_present_commits_are_pinned_and_need_no_lock(tmp_path: Path, source: Path) -> None:
    """An ancestor fetched along with a later commit is pinned when it is
    ensured (refs/ci/commits/<sha> keeps it from git gc); once pinned, an
    ensure does not wait behind another project's fetch holding the lock."""
    m1 = commit(source, {"f": "1\n"}, "m1")
    m2 = commit(source, {"f": "2\n"}, "m2")
    mirror = Mirror(tmp_path / "work", REPO, str(source))
    await mirror.ensure(m2)
    assert f"refs/ci/commits/{m1}" not in refs(mirror)
    await mirror.ensure(m1)  # present already: pinned, not fetched
    assert f"refs/ci/commits/{m1}" in refs(mirror)
    with trio.fail_after(30):
        async with mirror._lock:  # a fetch in progress
            await mirror.ensure(m1)
            await mirror.ensure(m2)
