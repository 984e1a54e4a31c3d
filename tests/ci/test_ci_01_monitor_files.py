"""CI-1: starting the CI writes `me/p/.monitor` (commit `Add .monitor
files`); a second start adds no such commit."""

from __future__ import annotations

from tests.ci.cihelpers import CIStack, all_commits, read


def monitor_commits(stack: CIStack) -> list[str]:
    """Commits of github-metadata that added `me/p/.monitor`."""
    out = []
    for c in all_commits(stack.meta.head()):
        had = any(read(p.tree(), "me/p/.monitor") is not None for p in c.parents)
        if read(c.tree(), "me/p/.monitor") is not None and not had:
            out.append(c.message)
    return out


def test_ci_01_monitor_files(ci_stack: CIStack) -> None:
    stack = ci_stack
    stack.configure([{"name": "ok", "run": ["true"]}])
    assert read(stack.meta.head().tree(), "me/p/.monitor") is None  # type: ignore[union-attr]
    stack.start()
    stack.wait_meta(lambda t: read(t, "me/p/.monitor") == b"", "me/p/.monitor")
    assert monitor_commits(stack) == ["Add .monitor files\n"]
    stack.wait_status(stack.m1, "ok", "success")
    stack.stop()

    stack.start()
    # The restarted CI has certainly looked at its monitors once it handled
    # a later commit of the source repository.
    m2 = stack.commit("m2")
    stack.wait_status(m2, "ok", "success")
    assert monitor_commits(stack) == ["Add .monitor files\n"]
    messages = [c.message for c in all_commits(stack.meta.head())]
    assert messages.count("Add .monitor files\n") == 1
