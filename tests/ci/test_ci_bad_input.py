"""The issue's "bad input and failure" list, end to end: a job that forks a
child outliving it, prints megabytes or binary junk; a source repository
that vanishes; a second CI on the same database; the database restarting
under the CI. None may leave a status pending forever or a stray process."""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest

from datakit.client import connect
from tests.bridges.localbridge import unix_server
from tests.ci.cihelpers import (
    CIProcess,
    CIStack,
    ci_stack_on,
    read,
    result_branches,
    statuses,
    wait_until,
    with_marker,
)
from tests.gitrepo import git


def no_pending(stack: CIStack) -> None:
    head = stack.meta.head()
    assert head is not None
    pending = {k: s for k, s in statuses(head.tree()).items() if s.state == "pending"}
    assert not pending, pending


def test_ci_child_outliving_its_job_is_killed(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    mark, pidfile = stack.marker(), stack.tmp / "child.pid"
    # The daemonised child keeps the job's output pipe open, too.
    script = (f"(echo $BASHPID > {pidfile}; exec -a {mark} sleep 100) & "
              f"while [ ! -s {pidfile} ]; do sleep 0.05; done; echo started")
    stack.configure([{"name": "forker", "run": ["bash", "-c", script]}])
    stack.start()
    status = stack.wait_status(m1, "forker", "success")
    assert status.description == "forker passed", status
    pid = int(pidfile.read_text())
    wait_until(lambda: not [p for p in with_marker(mark) if p.pid == pid],
               "the child that outlived its job ending", why=stack.why)
    (branch,) = result_branches(stack.conn, "forker", m1)
    head = stack.conn.branch(branch).head()
    assert head is not None and b"started" in (read(head.tree(), "log") or b"")


def test_ci_megabytes_of_output_are_capped(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    size = 20 << 20  # over the 16 MiB cap
    stack.configure([{"name": "chatty",
                      "run": f"echo first line; head -c {size} /dev/zero | tr '\\0' x; echo"}])
    stack.start()
    stack.wait_status(m1, "chatty", "success", timeout=120)
    (branch,) = result_branches(stack.conn, "chatty", m1)
    head = stack.conn.branch(branch).head()
    assert head is not None
    log = read(head.tree(), "log")
    assert log is not None
    assert log.startswith(b"first line\n")
    assert 15 << 20 < len(log) <= (16 << 20) + 4096, len(log)
    assert b"truncated" in log[-4096:], log[-200:]


def test_ci_binary_junk_in_the_output(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "junk", "run": "head -c 65536 /dev/urandom; echo; echo the end"}])
    stack.start()
    stack.wait_status(m1, "junk", "success")
    (branch,) = result_branches(stack.conn, "junk", m1)
    head = stack.conn.branch(branch).head()
    assert head is not None
    log = read(head.tree(), "log")
    assert log is not None and len(log) > 65536 and log.endswith(b"the end\n")
    with stack.http() as http:
        page = http.get(f"/log/saved/{branch}/{head.id}")
        assert page.status_code == 200
        assert "the end" in page.text


def test_ci_source_repository_vanishes(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    source = stack.tmp / "source.git"
    git(None, "clone", "-q", "--bare", str(stack.repo), str(source))
    stack.configure([{"name": "ok", "run": ["true"]}], source=source)
    stack.start()
    stack.wait_status(m1, "ok", "success")
    shutil.rmtree(source)
    m2 = stack.commit("m2")
    failed = stack.wait_status(m2, "ok", "failure")
    assert failed.description, failed
    assert stack.ci is not None
    assert stack.ci.proc.poll() is None, stack.ci.tail()
    no_pending(stack)
    assert result_branches(stack.conn, "ok", m2) == []  # nothing stored for m2


def test_ci_second_ci_on_the_same_database_is_refused(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([{"name": "ok", "run": stack.counting("ok")}])
    first = stack.start()
    stack.wait_status(m1, "ok", "success")
    args = stack.ci_args()
    args[args.index("--workdir") + 1] = str(stack.tmp / "work2")
    second = CIProcess(args, stack.tmp / "second.log")
    try:
        status = second.wait_exit()
    finally:
        second.kill()
    assert status != 0, second.log
    assert "Traceback" not in second.log, second.log
    assert second.log.strip(), "refused without a word"
    assert first.proc.poll() is None, first.tail()
    m2 = stack.commit("m2")
    stack.wait_status(m2, "ok", "success")
    assert stack.runs_of("ok") == 2  # each commit once: nobody ran them twice


@pytest.mark.parametrize("kind", ["git", "memory"])
def test_ci_database_restarts_under_the_ci(tmp_path: Path, kind: str) -> None:
    """The server stops and comes back on the same address; an in-memory
    one comes back empty, and the CI writes its `.monitor` and the statuses
    of the current heads again."""
    sock, db = tmp_path / "dk.sock", tmp_path / "db.git"
    store = ["--git", str(db)] if kind == "git" else []
    address = f"unix://{sock}"
    with ExitStack() as first:
        first.enter_context(unix_server(sock, *store, log=tmp_path / "server.log"))
        with ci_stack_on(tmp_path, address) as stack:
            stack.configure([{"name": "ok", "run": stack.counting("ok")}])
            stack.start()
            good = stack.wait_status(stack.m1, "ok", "success")
            first.close()  # the server stops under the CI and the bridge
            with unix_server(sock, *store, log=tmp_path / "server2.log"):
                stack.conn = connect(address, timeout=30)
                try:
                    stack.wait_meta(lambda t: read(t, "me/p/.monitor") == b"", "me/p/.monitor",
                                    timeout=120)
                    assert stack.wait_status(stack.m1, "ok", "success", timeout=120) == good
                    m2 = stack.commit("m2")
                    stack.wait_status(m2, "ok", "success", timeout=120)
                    if kind == "git":  # m1's result survived: not run again
                        assert stack.runs_of("ok") == 2
                    no_pending(stack)
                    stack.stop()
                finally:
                    stack.conn.close()
