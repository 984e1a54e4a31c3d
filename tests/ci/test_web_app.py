"""The web UI over a fake CIView (spec ci.md A.5, B.6, B.7; CI-8's
token/403 part, CI-15's page behaviour, CI-16): every route, what the pages
say, who may POST, and the live log streamed by a real Hypercorn server."""

from __future__ import annotations

import logging
import re
import socket
from functools import partial

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry, Counter

from datakit.bridges.service import StartupError
from datakit.ci.model import JobState
from datakit.ci.web import create_app, links, serve_web
from datakit.ci.web.app import pick_job
from datakit.github.model import PRId, RefId, Repo
from tests.ci.fakeview import (
    DEV,
    PR5,
    FakeView,
    example_view,
    result_branch,
    sha,
)

TOKEN = "s3cret-token"
M, D, P = sha(1), sha(2), sha(3)
DEV_TEST = result_branch("test", D)
PR_BUILD = result_branch("build", P)


def client(view: FakeView, token: str | None = TOKEN, **kw: object) -> httpx.AsyncClient:
    app = create_app(view, token=token, **kw)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ci.test")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


# --- pages (CI-16) --------------------------------------------------------------


async def test_ci_16_dashboard_tiles() -> None:
    async with client(example_view()) as c:
        r = await c.get("/")
    assert r.status_code == 200
    assert 'class="tile success" href="/me/p/ref/heads/master"' in r.text
    assert 'class="tile failure" href="/me/p/ref/heads/dev"' in r.text
    assert 'tile-job failure" title="test failed: exit 3">test<' in r.text
    assert "1 pull request" in r.text


async def test_ci_16_dashboard_branch_never_built_is_grey() -> None:
    view = example_view()
    del view.target_views[DEV]
    async with client(view) as c:
        r = await c.get("/")
    assert 'class="tile unknown"' in r.text and "no build" in r.text


async def test_ci_16_lists() -> None:
    async with client(example_view()) as c:
        branches = await c.get("/branch")
        prs = await c.get("/pr")
        tags = await c.get("/tag")
    assert branches.status_code == prs.status_code == tags.status_code == 200
    # job names, states as colour classes, durations
    assert 'href="/me/p/ref/heads/master">master</a>' in branches.text
    chip = r'class="chip {}"[^>]*>{} <span class="chip-time">{}<'
    assert re.search(chip.format("success", "build", "1m 12s"), branches.text)
    assert re.search(chip.format("failure", "test", "3s"), branches.text)
    assert f'href="/me/p/commit/{D}"' in branches.text
    assert "#5" not in branches.text
    assert 'href="/me/p/pr/5">#5</a>' in prs.text
    assert "Make &lt;it&gt; faster &amp; better" in prs.text
    assert 'class="chip pending"' in prs.text
    assert "Nothing here yet" in tags.text


async def test_ci_16_target_page_shows_the_first_failed_job() -> None:
    async with client(example_view()) as c:
        r = await c.get("/me/p/ref/heads/dev")
    assert r.status_code == 200
    assert 'class="job failure selected"' in r.text
    assert 'class="job success"' in r.text
    # its saved log, rendered and escaped
    assert '<span class="ansi-fg-red">FAIL</span> test_x &lt;script&gt;' in r.text
    assert "<script>" not in r.text
    assert f'href="/log/saved/{DEV_TEST}/{sha(14)}"' in r.text
    assert f'href="/me/p/commit/{D}"' in r.text
    assert "test failed: exit 3" in r.text and "3s" in r.text


async def test_ci_16_target_page_selection() -> None:
    async with client(example_view()) as c:
        chosen = await c.get("/me/p/ref/heads/dev", params={"test": "build"})
        master = await c.get("/me/p/ref/heads/master")
        pr = await c.get("/me/p/pr/5")
        unknown = await c.get("/me/p/ref/heads/dev", params={"test": "nope"})
    assert 'class="job success selected"' in chosen.text and "built" in chosen.text
    # no failure, no pending: the first (successful) job
    assert re.search(r'class="job success selected">\s*<a href="[^"]*test=build', master.text)
    assert '<span class="ansi-fg-green">ok</span>' in master.text
    assert "1m 12s" in master.text
    # the first pending job of the PR: its live log and a link to follow it
    assert re.search(r'class="job pending selected">\s*<a href="[^"]*test=build', pr.text)
    assert "starting build" in pr.text
    assert f'href="/log/live/{PR_BUILD}"' in pr.text
    assert 'class="job failure selected"' in unknown.text
    # pages with unfinished jobs reload themselves (no JavaScript needed)
    assert '<meta http-equiv="refresh"' in pr.text
    assert '<meta http-equiv="refresh"' not in master.text


def test_pick_job_order() -> None:
    target = example_view().target_views[PR5]
    assert pick_job(target.jobs, None) is target.jobs[0]
    assert pick_job(target.jobs, "test") is target.jobs[1]
    assert pick_job((), None) is None


async def test_ci_16_target_history() -> None:
    async with client(example_view()) as c:
        r = await c.get("/me/p/ref/heads/master")
    history = r.text[r.text.index('class="history"') :]
    assert f'href="/me/p/commit/{sha(9)}"' in history
    assert f'href="/me/p/commit/{M}"' in history
    assert 'class="chip failure" title="build failed: exit 1">build<' in history
    assert f'href="/me/p/ref/heads/master?history={sha(20)}"' in history
    assert "Evaluation" not in r.text


async def test_target_page_shows_an_older_evaluation() -> None:
    async with client(example_view()) as c:
        r = await c.get("/me/p/ref/heads/master", params={"history": sha(20)})
        bad = await c.get("/me/p/ref/heads/master", params={"history": "<x>"})
    assert r.status_code == 200 and bad.status_code == 200
    evaluation = r.text[r.text.index('class="evaluation failure"') :]
    assert f"<code>{sha(20)[:10]}</code>" in evaluation
    assert f'href="/me/p/commit/{sha(9)}"' in evaluation
    assert "build failed: exit 1" in evaluation
    assert 'class="failure selected"' in r.text
    assert "Evaluation" not in bad.text


async def test_ci_16_commit_page() -> None:
    async with client(example_view()) as c:
        live = await c.get(f"/me/p/commit/{M}", params={"test": "test"})
        archived = await c.get(f"/me/p/commit/{sha(9)}")
        unknown = await c.get(f"/me/p/commit/{sha(99)}")
        upper = await c.get(f"/me/p/commit/{M.upper()}")
        short = await c.get(f"/me/p/commit/{M[:12]}")
    assert live.status_code == 303
    assert live.headers["location"] == "/me/p/ref/heads/master?test=test"
    assert archived.status_code == 200
    assert 'href="/me/p/ref/heads/master">master</a>' in archived.text
    assert "build: build failed: exit 1" in archived.text
    assert unknown.status_code == upper.status_code == short.status_code == 404


async def test_ci_16_commit_page_lists_several_live_targets() -> None:
    view = example_view()
    target = view.target_views[DEV]
    view.put(type(target)(PR5, D, target.jobs))
    async with client(view) as c:
        r = await c.get(f"/me/p/commit/{D}", params={"test": "test"})
    assert r.status_code == 200
    assert 'href="/me/p/ref/heads/dev?test=test"' in r.text
    assert 'href="/me/p/pr/5?test=test"' in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/me/p/ref/heads/nope",
        "/me/p/pr/99",
        "/me/p/pr/abc",
        "/other/repo/pr/5",
        "/me/p/ref/heads/a..b",
        "/me/p/ref/heads/%2e%2e",
        "/me/p/ref/heads/x%00y",
        "/me/p/ref/master",
        "/bad%20user/p/pr/5",
        "/log/live/no-such-branch",
        "/log/live/..bad",
        f"/log/saved/{DEV_TEST}/{sha(99)}",
        f"/log/saved/{DEV_TEST}/not-a-sha",
        f"/log/saved/bad..name/{sha(14)}",
        "/no/such/page/at/all",
        "/static/nope.css",
    ],
)
async def test_unknown_things_are_404_pages(path: str) -> None:
    async with client(example_view()) as c:
        r = await c.get(path)
    assert r.status_code == 404
    assert "404" in r.text and "Back to the dashboard" in r.text


async def test_saved_log_page() -> None:
    async with client(example_view()) as c:
        r = await c.get(f"/log/saved/{DEV_TEST}/{sha(14)}")
    assert r.status_code == 200
    escaped = "test_x &lt;script&gt;alert(1)&lt;/script&gt;"
    assert f'<span class="ansi-fg-red">FAIL</span> {escaped}' in r.text
    assert "<script>" not in r.text
    # links back to the target and the commit
    assert 'href="/me/p/ref/heads/dev?test=test"' in r.text
    assert f'href="/me/p/commit/{D}?test=test"' in r.text
    assert f'href="/log/raw/{DEV_TEST}/{sha(14)}"' in r.text


async def test_raw_log_is_the_stored_bytes_as_plain_text() -> None:
    view = example_view()
    async with client(view) as c:
        r = await c.get(f"/log/raw/{DEV_TEST}/{sha(14)}")
        missing = await c.get(f"/log/raw/{DEV_TEST}/{sha(99)}")
    assert r.status_code == 200 and r.content == view.saved_logs[(DEV_TEST, sha(14))]
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404


async def test_static_and_security_headers() -> None:
    async with client(example_view()) as c:
        css = await c.get("/static/style.css")
        page = await c.get("/")
    assert css.status_code == 200 and ".tile.success" in css.text
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'none'" in page.headers["content-security-policy"]


async def test_metrics_serve_the_given_registry() -> None:
    registry = CollectorRegistry()
    Counter("datakit_ci_jobs", "jobs", ["result"], registry=registry).labels("success").inc()
    async with client(example_view(), registry=registry) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200
    assert 'datakit_ci_jobs_total{result="success"} 1.0' in r.text
    assert r.headers["content-type"].startswith("text/plain")


# --- who may POST (CI-8's token part) --------------------------------------------


async def login(c: httpx.AsyncClient, password: str = TOKEN) -> httpx.Response:
    page = await c.get("/login", params={"next": "/me/p/ref/heads/dev"})
    return await c.post(
        "/login",
        data={"csrf": csrf_of(page.text), "password": password, "next": "/me/p/ref/heads/dev"},
    )


async def test_ci_08_no_token_refuses_every_post() -> None:
    view = example_view()
    async with client(view, token=None) as c:
        page = await c.get("/login")
        assert "--token-file" in page.text
        assert 'name="password"' not in page.text
        posts = (f"/rebuild/{DEV_TEST}", f"/cancel/{PR_BUILD}", "/rebuild-failed/me/p/pr/5")
        for path in posts:
            r = await c.post(path, headers={"authorization": "Bearer anything"})
            assert r.status_code == 403 and "--token-file" in r.text
        r = await c.post("/login", data={"password": ""})
        assert r.status_code == 403
    assert view.calls == []


async def test_ci_08_anonymous_and_wrong_tokens_are_403() -> None:
    view = example_view()
    async with client(view) as c:
        page = await c.get("/me/p/ref/heads/dev")
        assert "log in to rebuild" in page.text and "/rebuild/" not in page.text
        csrf = csrf_of((await c.get("/login")).text)  # the anonymous session's token
        assert (await c.post(f"/rebuild/{DEV_TEST}")).status_code == 403
        r = await c.post(f"/rebuild/{DEV_TEST}", data={"csrf": csrf})
        assert r.status_code == 403 and "Log in" in r.text
        r = await c.post(f"/rebuild/{DEV_TEST}", headers={"authorization": "Bearer wrong"})
        assert r.status_code == 403
        r = await c.post(f"/rebuild/{DEV_TEST}", headers={"authorization": f"Basic {TOKEN}"})
        assert r.status_code == 403
        assert (await login(c, "wrong")).status_code == 403
        r = await c.post("/login", data={"password": TOKEN})  # no CSRF field
        assert r.status_code == 403
        assert (await c.post(f"/rebuild/{DEV_TEST}", data={"csrf": csrf})).status_code == 403
    assert view.calls == []


async def test_ci_08_login_then_forms_need_the_csrf_token() -> None:
    view = example_view()
    async with client(view) as c:
        r = await login(c)
        assert r.status_code == 303 and r.headers["location"] == "/me/p/ref/heads/dev"
        page = await c.get("/me/p/ref/heads/dev")
        assert f'action="/rebuild/{DEV_TEST}"' in page.text
        assert 'action="/rebuild-failed/me/p/ref/heads/dev"' in page.text
        csrf = csrf_of(page.text)
        back = "/me/p/ref/heads/dev?test=test"
        r = await c.post(f"/rebuild/{DEV_TEST}", data={"redirect": back})
        assert r.status_code == 403
        r = await c.post(f"/rebuild/{DEV_TEST}", data={"csrf": "0" * 64, "redirect": back})
        assert r.status_code == 403
        assert view.calls == []
        r = await c.post(f"/rebuild/{DEV_TEST}", data={"csrf": csrf, "redirect": back})
        assert r.status_code == 303 and r.headers["location"] == back
        assert view.calls == [("rebuild", DEV_TEST)]
        r = await c.post("/rebuild-failed/me/p/ref/heads/dev", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/me/p/ref/heads/dev"
        assert view.calls[-1] == ("rebuild_failed", DEV)
        # the cancel form is on the page of a running job
        pr = await c.get("/me/p/pr/5")
        assert f'action="/cancel/{PR_BUILD}"' in pr.text
        r = await c.post(f"/cancel/{PR_BUILD}", data={"csrf": csrf, "redirect": "//evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/me/p/pr/5?test=build"
        assert view.calls[-1] == ("cancel", PR_BUILD)
        # log out: the old CSRF token is worth nothing now
        r = await c.post("/logout", data={"csrf": csrf})
        assert r.status_code == 303
        count = len(view.calls)
        r = await c.post(f"/rebuild/{DEV_TEST}", data={"csrf": csrf})
        assert r.status_code == 403 and len(view.calls) == count


async def test_ci_08_a_forged_cookie_is_anonymous() -> None:
    view = example_view()
    async with client(view) as c:
        await login(c)
        cookie = c.cookies["datakit_ci_session"]
        nonce, _admin, issued, signature = cookie.split(".")
        page = await c.get("/me/p/ref/heads/dev")
        csrf = csrf_of(page.text)
    async with client(view) as other:  # another process: another signing key
        other.cookies.set("datakit_ci_session", cookie)
        r = await other.post(f"/rebuild/{DEV_TEST}", data={"csrf": csrf})
        assert r.status_code == 403
    async with client(view) as c:
        c.cookies.set("datakit_ci_session", f"{nonce}.1.{issued}.{'0' * len(signature)}")
        r = await c.post(f"/rebuild/{DEV_TEST}", data={"csrf": csrf})
        assert r.status_code == 403
    assert view.calls == []


async def test_ci_08_bearer_token_for_scripts() -> None:
    view = example_view()
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with client(view) as c:
        r = await c.post(f"/rebuild/{DEV_TEST}", headers=auth)
        assert r.status_code == 200 and DEV_TEST in r.text
        r = await c.post("/rebuild-failed/me/p/ref/heads/dev", headers=auth)
        assert r.status_code == 200 and "Rebuilding 1 failed jobs" in r.text
        r = await c.post(f"/cancel/{PR_BUILD}", headers=auth)
        assert r.status_code == 200
        r = await c.post(f"/cancel/{DEV_TEST}", headers=auth)  # finished: nothing to cancel
        assert r.status_code == 409
        r = await c.post("/rebuild/no-such-run", headers=auth)
        assert r.status_code == 404
        r = await c.post("/rebuild/bad..name", headers=auth)
        assert r.status_code == 404
        r = await c.post("/rebuild-failed/me/p/pr/77", headers=auth)
        assert r.status_code == 404
        r = await c.get(f"/rebuild/{DEV_TEST}", headers=auth)
        assert r.status_code == 405
    assert view.calls == [
        ("rebuild", DEV_TEST),
        ("rebuild_failed", DEV),
        ("cancel", PR_BUILD),
        ("cancel", DEV_TEST),
        ("rebuild", "no-such-run"),
    ]


# --- the live log over a real server (CI-15) --------------------------------------


async def read_until(chunks: object, text: str, seen: list[str]) -> None:
    it = chunks.__aiter__()  # type: ignore[attr-defined]
    with trio.fail_after(30):
        while text not in "".join(seen):
            seen.append(await it.__anext__())


async def test_ci_15_live_log_streams_then_redirects(nursery: trio.Nursery) -> None:
    view = example_view()
    host, port = await nursery.start(partial(serve_web, view, "127.0.0.1", 0, token=None))
    live = view.live_logs[PR_BUILD]
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as c:
        async with c.stream("GET", f"/log/live/{PR_BUILD}") as r:
            assert r.status_code == 200
            assert r.headers["x-accel-buffering"] == "no"
            chunks = r.aiter_text()
            seen: list[str] = []
            await read_until(chunks, "starting build", seen)
            # a colour code split across two writes
            live.write(b"\x1b[3")
            live.write(b"1mred <b> line\x1b[0m\n")
            await read_until(chunks, "line", seen)
            assert '<span class="ansi-fg-red">red &lt;b&gt; line</span>' in "".join(seen)
            assert "</html>" not in "".join(seen)
            # the job ends; its log is saved on the result branch
            view.saved_logs[(PR_BUILD, sha(15))] = live.snapshot()
            view.update_job(PR5, "build", state=JobState.SUCCESS, saved=sha(15), live=False)
            live.close()
            await read_until(chunks, "</html>", seen)
            assert f'href="/log/saved/{PR_BUILD}/{sha(15)}"' in "".join(seen)
        r = await c.get(f"/log/live/{PR_BUILD}")
        assert r.status_code == 303
        assert r.headers["location"] == f"/log/saved/{PR_BUILD}/{sha(15)}"
        saved = await c.get(r.headers["location"])
        assert saved.status_code == 200
        assert '<span class="ansi-fg-red">red &lt;b&gt; line</span>' in saved.text


async def test_closed_log_not_yet_saved_is_shown_with_a_reload_link() -> None:
    view = example_view()
    view.live_logs[PR_BUILD].close()
    async with client(view) as c:
        r = await c.get(f"/log/live/{PR_BUILD}")
    assert r.status_code == 200
    assert "starting build" in r.text and "being saved" in r.text
    assert f'href="/log/live/{PR_BUILD}">Reload' in r.text


async def test_serve_web_port_0_is_announced(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="datakit.bridges")
    host, port = await nursery.start(
        partial(serve_web, example_view(), "127.0.0.1", 0, token=TOKEN)
    )
    assert host == "127.0.0.1" and port > 0
    assert f"Web UI at http://127.0.0.1:{port}/" in caplog.text
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{port}/")
    assert r.status_code == 200 and "master" in r.text


async def test_serve_web_on_a_busy_port_is_a_startup_error(nursery: trio.Nursery) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StartupError, match=f"--listen 127.0.0.1:{port}"):
            await nursery.start(partial(serve_web, example_view(), "127.0.0.1", port, token=None))


async def test_serve_web_stops_on_shutdown() -> None:
    stop = trio.Event()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(serve_web, example_view(), "127.0.0.1", 0, token=None, shutdown=stop)
            )
            stop.set()


async def test_ci_08_rebuild_failed_by_query_and_upstream_path() -> None:
    view = example_view()
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with client(view) as c:
        r = await c.post("/rebuild", params={"failed": "me/p/heads/dev"}, headers=auth)
        assert r.status_code == 200 and "Rebuilding 1 failed jobs" in r.text
        r = await c.post("/rebuild", params={"failed": "me/p/prs/5"}, headers=auth)
        assert r.status_code == 200 and "Rebuilding 0 failed jobs" in r.text
        r = await c.post("/rebuild", params={"failed": "me/p/ref/heads/dev"}, headers=auth)
        assert r.status_code == 200
        for bad in ("me/p/heads/nope", "me/p", "other/p/heads/dev", "me/p/prs/x", ""):
            r = await c.post("/rebuild", params={"failed": bad}, headers=auth)
            assert r.status_code == 404, bad
        r = await c.post("/rebuild", params={"failed": "me/p/heads/dev"})
        assert r.status_code == 403
        r = await c.post(f"/log/rebuild/{DEV_TEST}", headers=auth)
        assert r.status_code == 200
    assert view.calls == [
        ("rebuild_failed", DEV),
        ("rebuild_failed", PR5),
        ("rebuild_failed", DEV),
        ("rebuild", DEV_TEST),
    ]


class BrokenStoreView(FakeView):
    """A view whose store is gone (DataKit restarting under the CI)."""

    async def saved_log(self, branch: str, commit: str) -> bytes | None:
        raise ConnectionError("store gone")

    async def history(self, ident: object, limit: int = 20) -> list[object]:  # type: ignore[override]
        raise ConnectionError("store gone")

    async def rebuild(self, branch: str) -> bool:
        raise ConnectionError("store gone")


async def test_store_errors_are_pages_not_crashes() -> None:
    good = example_view()
    view = BrokenStoreView(good.config, target_views=good.target_views)
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with client(view) as c:
        target = await c.get("/me/p/ref/heads/dev")
        saved = await c.get(f"/log/saved/{DEV_TEST}/{sha(14)}")
        rebuild = await c.post(f"/rebuild/{DEV_TEST}", headers=auth)
        again = await c.get("/")
    assert target.status_code == 200 and "could not be read" in target.text
    assert saved.status_code == 503 and rebuild.status_code == 503
    assert again.status_code == 200


async def test_big_logs_render_whole_on_the_log_page_and_tail_on_the_target_page() -> None:
    view = example_view()
    lines = [f"\x1b[3{i % 8}mline {i}\x1b[0m <{i}>\n".encode() for i in range(40000)]
    big = b"".join(lines)
    assert len(big) > 512 * 1024
    view.saved_logs[(DEV_TEST, sha(14))] = big
    async with client(view) as c:
        saved = await c.get(f"/log/saved/{DEV_TEST}/{sha(14)}")
        target = await c.get("/me/p/ref/heads/dev")
    assert saved.status_code == 200
    assert '<span class="ansi-fg-red">line 1</span> &lt;1&gt;' in saved.text
    assert '<span class="ansi-fg-white">line 39999</span> &lt;39999&gt;' in saved.text
    assert links.format_size(len(big)) == "1.0 MiB" and "· 1.0 MiB" in saved.text
    assert "Showing the last 256 KiB" in target.text
    assert "line 39999</span>" in target.text and ">line 1<" not in target.text


async def test_login_and_logout_pages() -> None:
    async with client(example_view()) as c:
        login_page = await c.get("/login", params={"next": "//evil.example/"})
        logout_page = await c.get("/logout")
    assert login_page.status_code == 200 and 'name="password"' in login_page.text
    assert 'name="next" value="/"' in login_page.text  # never another site
    assert logout_page.status_code == 200 and 'action="/logout"' in logout_page.text
    assert "datakit_ci_session" in login_page.headers["set-cookie"]
    assert "httponly" in login_page.headers["set-cookie"].lower()


def test_links_and_formats() -> None:
    assert links.format_duration(72) == "1m 12s"
    assert links.format_duration(3.9) == "3s"
    assert links.format_duration(0.2) == "<1s"
    assert links.format_duration(3600 * 2 + 60 * 5 + 7) == "2h 5m"
    assert links.format_duration(None) == ""
    assert links.format_ago(100.0, now=160.0) == "1m ago"
    assert links.format_size(1) == "1 byte" and links.format_size(66) == "66 bytes"
    assert links.format_size(3 * 1024 * 1024 + 200 * 1024) == "3.2 MiB"
    assert links.format_ago(100.0, now=100.0 + 3 * 3600 + 5) == "3h ago"
    for bad in ("//evil", "http://evil", "/\\evil", "/a\nb", "", None):
        assert links.safe_redirect(bad) == "/"
    assert links.safe_redirect("/me/p/pr/5?test=x") == "/me/p/pr/5?test=x"
    repo = Repo("me", "p")
    assert links.parse_ref(repo, "heads/fix/x-y") == RefId(repo, ("heads", "fix", "x-y"))
    for bad in (
        "heads",
        "heads/",
        "heads/a..b",
        "heads/.x",
        "heads/x.lock",
        "heads/a b",
        "heads/a@{1",
    ):
        assert links.parse_ref(repo, bad) is None, bad
    assert links.parse_pr(repo, "5") == PRId(repo, 5)
    assert links.parse_pr(repo, "-5") is None and links.parse_pr(repo, "\u0665") is None
    assert links.parse_sha("A" * 40) is None and links.parse_sha("a" * 40) == "a" * 40
    ident = RefId(Repo("a_b", "c-d"), ("heads", "fix#1", "100%"))
    assert links.target_path(ident) == "/a_b/c-d/ref/heads/fix%231/100%25"
    assert links.target_label(ident) == "fix#1/100%"
    assert links.commit_url(repo, "a" * 40, "my job") == f"/me/p/commit/{'a' * 40}?test=my+job"


async def test_ref_names_with_url_characters_round_trip() -> None:
    view = example_view()
    target = view.target_views[DEV]
    ident = RefId(Repo("me", "p"), ("heads", "fix#1", "100%"))
    view.put(type(target)(ident, target.head, target.jobs))
    async with client(view) as c:
        listing = await c.get("/branch")
        page = await c.get("/me/p/ref/heads/fix%231/100%25")
    assert 'href="/me/p/ref/heads/fix%231/100%25">fix#1/100%</a>' in listing.text
    assert page.status_code == 200 and "fix#1/100%" in page.text


async def test_bad_form_bodies_are_client_errors() -> None:
    view = example_view()
    async with client(view) as c:
        await login(c)
        many = "&".join(f"f{i}=x" for i in range(100))
        r = await c.post(
            f"/rebuild/{DEV_TEST}",
            content=many,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 400
        r = await c.post(
            f"/rebuild/{DEV_TEST}",
            content=b"csrf=" + b"x" * 100_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 413
    assert view.calls == []


async def test_waiting_job_has_no_log_yet() -> None:
    async with client(example_view()) as c:
        r = await c.get("/me/p/pr/5", params={"test": "test"})
    assert 'class="job pending selected"' in r.text and "Waiting to start." in r.text


async def test_head_of_a_live_log_does_not_wait_for_the_job() -> None:
    async with client(example_view()) as c:
        with trio.fail_after(30):
            r = await c.head(f"/log/live/{PR_BUILD}")
    assert r.status_code == 200 and r.headers["x-accel-buffering"] == "no"
