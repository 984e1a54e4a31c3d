"""CI-15: `/log/live/<branch>` streams a running job's output as it is
printed; once the job ended it redirects to `/log/saved/<branch>/<commit>`,
whose page shows the stored log (ANSI colours as spans, HTML escaped)."""

from __future__ import annotations

import html
import re

from tests.ci.cihelpers import CIStack, expected_result_branch, read, wait_until

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def page_text(body: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", body))


def test_ci_15_live_log_page(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    mark = stack.marker()
    gate = stack.tmp / "gate"
    script = (
        "echo 'line 1 of slow'; "
        f"while [ ! -e {gate} ]; do sleep 0.1; done; "
        "printf '\\033[31mred <b>&\\033[0m plain\\n'; "
        f"echo 'line 2 of slow'; : {mark}"
    )
    stack.configure([{"name": "slow", "run": ["bash", "-c", script]}])
    stack.start()
    branch = expected_result_branch(stack.config_path, "slow", m1)
    stack.wait_marker(mark)
    with stack.http() as http:
        with http.stream("GET", f"/log/live/{branch}") as live:
            assert live.status_code == 200, live.status_code
            assert live.headers.get("x-accel-buffering") == "no", live.headers
            received = b""
            chunks = live.iter_bytes()
            while b"line 1 of slow" not in received:
                received += next(chunks)  # the job waits for the gate: it still runs
            assert stack.status(m1, "slow").state == "pending"  # type: ignore[union-attr]
            gate.touch()
            for chunk in chunks:
                received += chunk
        streamed = received.decode()
        assert "line 2 of slow" in streamed
        assert "&lt;b&gt;&amp;" in streamed and "red <b>&" not in streamed

        stack.wait_status(m1, "slow", "success")
        result = stack.conn.branch(branch).head()
        assert result is not None
        log = read(result.tree(), "log")
        assert log is not None and b"line 2 of slow" in log

        def redirected() -> object:
            answer = http.get(f"/log/live/{branch}")
            return answer if answer.status_code in (301, 302, 303, 307, 308) else None

        answer = wait_until(redirected, "the live log redirecting to the saved one")
        location = answer.headers["location"]
        assert location.endswith(f"/log/saved/{branch}/{result.id}"), location
        saved = http.get(f"/log/saved/{branch}/{result.id}")
        assert saved.status_code == 200
        body = saved.text
        assert "\x1b" not in body
        assert "&lt;b&gt;&amp;" in body and "red <b>&" not in body
        assert re.search(r"<span[^>]*>red &lt;b&gt;&amp;</span>", body), body
        text = page_text(body)
        for line in ANSI.sub("", log.decode()).splitlines():
            assert line in text, (line, text)
