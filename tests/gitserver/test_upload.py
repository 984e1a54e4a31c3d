"""`datakit serve --listen-git`: the real `git` clones, fetches and lists
the live database over git:// (protocol v0 here; v2 in test_v2.py),
from a memory store and from a `--git` store."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.client import Branch, connect
from tests.gitrepo import git
from tests.operations.procs import datakit_ports

V0 = ("-c", "protocol.version=0")


class Served:
    def __init__(self, ports: dict[str, int]) -> None:
        self.url = f"git://127.0.0.1:{ports['git']}/"
        self.metrics_url = f"http://127.0.0.1:{ports['metrics']}/metrics"
        self.conn = connect(f"tcp://127.0.0.1:{ports['9p']}", timeout=30)

    def commit(self, branch: str, files: dict[str, bytes], message: str) -> str:
        b: Branch = self.conn.branch(branch)
        with b.transaction() as t:
            for path, data in files.items():
                if "/" in path:
                    t.make_dirs(path.rsplit("/", 1)[0])
                t.create_or_replace_file(path, data)
            t.commit(message)
        head = b.head()
        assert head is not None
        return head.id

    def metric(self, name: str, **labels: str) -> float:
        text = urllib.request.urlopen(self.metrics_url, timeout=10).read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.escape(name + (f"{{{want}}}" if labels else "")) + r" (\S+)"
        found = re.search(r"^" + pattern + "$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def wait_metric(self, minimum: float, name: str, **labels: str) -> float:
        """The metric once it reaches ``minimum``: a request is counted when
        its thread ends, which may be just after the client is done."""
        deadline = time.monotonic() + 10
        while (value := self.metric(name, **labels)) < minimum and time.monotonic() < deadline:
            time.sleep(0.05)
        return value


@pytest.fixture(params=["memory", "git"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    args = ["--listen-git", "tcp://127.0.0.1:0"]
    if request.param == "git":
        args += ["--git", str(tmp_path / "store.git")]
    with datakit_ports(*args) as (ports, _proc):
        s = Served(ports)
        yield s
        s.conn.close()


def test_clone_log_files_and_fsck(served: Served, tmp_path: Path) -> None:
    first = served.commit("master", {"a/b.txt": b"one\n", "top": b"x\n"}, "first")
    second = served.commit("master", {"a/b.txt": b"two\n"}, "second")
    clone = tmp_path / "clone"
    git(None, *V0, "clone", "-q", served.url, str(clone))
    assert git(clone, "rev-parse", "HEAD") == second
    assert git(clone, "rev-list", "HEAD").split() == [second, first]
    assert (clone / "a" / "b.txt").read_text() == "two\n"
    assert (clone / "top").read_text() == "x\n"
    assert git(clone, "symbolic-ref", "HEAD") == "refs/heads/master"
    git(clone, "fsck", "--strict", "--no-dangling")


def test_fetch_after_new_commits(served: Served, tmp_path: Path) -> None:
    served.commit("master", {"f": b"1\n"}, "c1")
    clone = tmp_path / "clone"
    git(None, *V0, "clone", "-q", "--bare", served.url, str(clone))
    new = [served.commit("master", {"f": f"{i}\n".encode()}, f"c{i}") for i in (2, 3)]
    other = served.commit("topic", {"g": b"g\n"}, "topic")
    git(clone, *V0, "fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*")
    assert git(clone, "rev-parse", "refs/remotes/origin/master") == new[-1]
    assert git(clone, "rev-parse", "refs/remotes/origin/topic") == other
    git(clone, "fsck", "--strict", "--no-dangling")
    # The second fetch had something in common: counted as a fetch.
    assert served.wait_metric(1, "datakit_git_requests_total", service="fetch", outcome="ok") >= 1
    assert served.wait_metric(1, "datakit_git_requests_total", service="clone", outcome="ok") >= 1


def test_ls_remote_lists_every_branch_and_head(served: Served) -> None:
    m = served.commit("master", {"f": b"m\n"}, "m")
    t = served.commit("topic", {"f": b"t\n"}, "t")
    out = git(None, *V0, "ls-remote", "--symref", served.url)
    lines = out.splitlines()
    assert "ref: refs/heads/master\tHEAD" in lines
    assert f"{m}\tHEAD" in lines
    assert f"{m}\trefs/heads/master" in lines
    assert f"{t}\trefs/heads/topic" in lines
    requests = "datakit_git_requests_total"
    assert served.wait_metric(1, requests, service="ls-remote", outcome="ok") == 1
    assert served.metric(requests, service="clone", outcome="ok") == 0


def test_shallow_clone_then_deepen(served: Served, tmp_path: Path) -> None:
    heads = [served.commit("master", {"f": f"{i}\n".encode()}, f"c{i}") for i in range(5)]
    clone = tmp_path / "shallow"
    git(None, *V0, "clone", "-q", "--depth", "1", served.url, str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    assert git(clone, "rev-list", "HEAD").split() == [heads[-1]]
    git(clone, "fsck", "--strict", "--no-dangling")
    # v0 offers `shallow` (absolute depths), not deepen-relative.
    git(clone, *V0, "fetch", "-q", "--depth", "3")
    assert git(clone, "rev-list", "HEAD").split() == heads[::-1][:3]
    git(clone, *V0, "fetch", "-q", "--unshallow")
    assert git(clone, "rev-list", "HEAD").split() == heads[::-1]
    git(clone, "fsck", "--strict", "--no-dangling")


def test_any_path_names_the_database(served: Served, tmp_path: Path) -> None:
    head = served.commit("master", {"f": b"x\n"}, "x")
    url = served.url + "some/where/else.git"
    assert git(None, *V0, "ls-remote", url, "refs/heads/master").split()[0] == head


def test_empty_database_clones_empty(served: Served, tmp_path: Path) -> None:
    done = subprocess.run(
        ["git", *V0, "clone", served.url, str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "empty repository" in done.stderr


def test_branch_without_master_is_the_default(served: Served, tmp_path: Path) -> None:
    head = served.commit("main", {"f": b"x\n"}, "x")
    clone = tmp_path / "clone"
    git(None, *V0, "clone", "-q", served.url, str(clone))
    assert git(clone, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(clone, "rev-parse", "HEAD") == head


def test_bytes_sent_are_counted(served: Served, tmp_path: Path) -> None:
    served.commit("master", {"big": bytes(range(256)) * 4096}, "a megabyte")
    before = served.metric("datakit_git_sent_bytes_total")
    git(None, *V0, "clone", "-q", "--bare", served.url, str(tmp_path / "c"))
    sent = served.wait_metric(before + 1000, "datakit_git_sent_bytes_total") - before
    # The blob compresses well, but the pack still carries its objects.
    assert 1000 < sent < 1 << 20, sent


def test_plain_fetch_in_a_shallow_clone(served: Served, tmp_path: Path) -> None:
    """Found in review: a shallow clone sends its shallow lines on every
    fetch, without deepen; v0 answered "unexpected flush-pkt"."""
    heads = [served.commit("master", {"f": f"{i}\n".encode()}, f"c{i}") for i in range(4)]
    clone = tmp_path / "shallow"
    git(None, *V0, "clone", "-q", "--depth", "2", served.url, str(clone))
    new = served.commit("master", {"f": b"new\n"}, "new")
    git(clone, *V0, "fetch", "-q")
    assert git(clone, "rev-parse", "origin/master") == new
    # Only what is new came: the history below the boundary did not.
    assert git(clone, "rev-list", "origin/master").split() == [new, heads[-1], heads[-2]]
    git(clone, "fsck", "--strict", "--no-dangling")
