"""The CI's web UI as a Starlette application over a :class:`CIView`
(spec ci.md A.5, B.6, B.7).

Pages are rendered on the server with Jinja2 (autoescape on) and work with
no JavaScript: rebuild and cancel are plain forms, the live log is one HTML
document whose body is streamed as the job writes. Everything read from a
URL is validated (:mod:`datakit.ci.web.links`) before the view is asked
about it; POSTs go through :class:`datakit.ci.web.auth.Auth`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
import jinja2
from markupsafe import Markup
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datakit.ci import model
from datakit.ci.model import CIView, JobState, JobView, TargetId, TargetView
from datakit.ci.web import links
from datakit.ci.web.ansi import AnsiRenderer, render
from datakit.ci.web.auth import NO_TOKEN_MESSAGE, Auth
from datakit.github.model import PRId, RefId, Repo

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_FORM = 64 * 1024
# How much of a log the target page shows inline (the log pages show all).
LOG_TAIL = 256 * 1024
HISTORY_LIMIT = 20
# Pages showing unfinished work reload themselves this often (no JavaScript).
REFRESH_SECONDS = 10
_MARKER = "<!--datakit-ci-log-->"
# Logs longer than this are rendered in a worker thread: 16 MiB of colour
# codes take seconds, and the engine shares this event loop.
OFFLOAD = 64 * 1024


async def render_log(data: bytes) -> str:
    if len(data) < OFFLOAD:
        return render(data)
    return await anyio.to_thread.run_sync(render, data)


async def _feed(renderer: AnsiRenderer, chunk: bytes) -> str:
    if len(chunk) < OFFLOAD:
        return renderer.feed(chunk)
    return await anyio.to_thread.run_sync(renderer.feed, chunk)


# What every response says about itself: no framing, no sniffing, styles
# only from here (inline style attributes carry 256-colour log colours).
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'none'; "
        b"form-action 'self'; frame-ancestors 'none'",
    ),
]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=links.format_duration,
        ago=links.format_ago,
        size=links.format_size,
        short=links.short,
    )
    env.globals.update(
        state_class=links.state_class,
        target_url=links.target_url,
        commit_url=links.commit_url,
        live_log_url=links.live_log_url,
        saved_log_url=links.saved_log_url,
        raw_log_url=links.raw_log_url,
        rebuild_failed_url=links.rebuild_failed_url,
        target_label=links.target_label,
        target_kind=links.target_kind,
        q=links.q,
    )
    return env


def pick_job(jobs: tuple[JobView, ...], wanted: str | None) -> JobView | None:
    """The job a target page shows: ``?test=`` if it names one, else the
    first failed, else the first pending, else the first (successful)."""
    if wanted:
        for job in jobs:
            if job.name == wanted:
                return job
    for job in jobs:
        if job.state is JobState.FAILURE:
            return job
    for job in jobs:
        if not job.state.finished:
            return job
    return jobs[0] if jobs else None


def _busy(target: TargetView) -> bool:
    return any(not job.state.finished for job in target.jobs)


def _order(target: TargetView) -> tuple[int, tuple[str, ...]]:
    """Newest PRs first; refs by name."""
    if isinstance(target.id, PRId):
        return (-target.id.number, ())
    return (0, target.id.name)


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response (a pure ASGI
    middleware: streamed responses stay streamed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WebUI:
    """The request handlers; one per application."""

    def __init__(self, view: CIView, auth: Auth, registry: CollectorRegistry) -> None:
        self.view = view
        self.auth = auth
        self.registry = registry
        self.env = _environment()

    # --- helpers ----------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
        session = self.auth.session(request)
        # The CSRF token is derived from the session: render with the same one.
        request.state.session = session
        response = HTMLResponse(self._render(request, template, **ctx), status_code=status)
        response.headers["cache-control"] = "no-store"
        if session.fresh:
            self.auth.set_cookie(response, session)
        return response

    def _render(self, request: Request, template: str, **ctx: Any) -> str:
        session = getattr(request.state, "session", None) or self.auth.session(request)
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        ctx.setdefault("nav", "")
        ctx.setdefault("refresh", None)
        return self.env.get_template(template).render(
            request_path=path,
            login_url="/login?" + urlencode({"next": path}),
            admin=session.admin,
            auth_enabled=self.auth.enabled,
            csrf=self.auth.csrf_token(session),
            **ctx,
        )

    def error(self, request: Request, status: int, message: str) -> Response:
        titles = {
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            409: "Conflict",
            503: "Unavailable",
        }
        return self.page(
            request,
            "error.html",
            status,
            code=status,
            title=titles.get(status, "Error"),
            message=message,
        )

    def _find_job(self, branch: str) -> tuple[TargetView, JobView] | None:
        """The current target and job whose result branch is ``branch``."""
        found: tuple[TargetView, JobView] | None = None
        for target in self.view.targets():
            for job in target.jobs:
                if job.branch == branch:
                    if job.saved is not None:
                        return target, job
                    found = found or (target, job)
        return found

    def _saved_commit(self, branch: str) -> str | None:
        found = self._find_job(branch)
        return found[1].saved if found else None

    async def _log_tail(self, job: JobView) -> tuple[str | None, int, int]:
        """(HTML of the end of the job's log or None, bytes shown, total)."""
        data: bytes | None = None
        live = self.view.live_log(job.branch) if job.live else None
        if live is not None:
            data = live.snapshot()
        elif job.saved is not None:
            try:
                data = await self.view.saved_log(job.branch, job.saved)
            except Exception:
                log.exception("web: reading the log of %s at %s", job.branch, job.saved)
        if data is None:
            return None, 0, 0
        shown = data[-LOG_TAIL:]
        return await render_log(shown), len(shown), len(data)

    async def _form(self, request: Request) -> dict[str, str]:
        """A url-encoded form body (python-multipart is not needed for it)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return {}
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise HTTPException(413, "form too large")
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=64)
        except ValueError:
            raise HTTPException(400, "too many form fields") from None
        return {k: v[0] for k, v in fields.items()}

    def _done(self, request: Request, form: dict[str, str], message: str, back: str) -> Response:
        """After an action: a script (bearer) gets text, a browser goes back."""
        if self.auth.bearer_ok(request) and "redirect" not in form:
            return PlainTextResponse(message + "\n")
        return RedirectResponse(links.safe_redirect(form.get("redirect"), back), 303)

    # --- pages --------------------------------------------------------------------

    async def dashboard(self, request: Request) -> Response:
        projects = []
        for project in self.view.config.projects:
            targets = self.view.targets(project.repo)
            tiles = []
            for branch in project.dashboards:
                ident = RefId(project.repo, ("heads", *branch.split("/")))
                tiles.append((branch, self.view.target(ident)))
            counts = {
                "branch": sum(1 for t in targets if links.target_kind(t.id) == "branch"),
                "pr": sum(1 for t in targets if isinstance(t.id, PRId)),
                "tag": sum(1 for t in targets if links.target_kind(t.id) == "tag"),
            }
            projects.append((project, tiles, counts))
        busy = any(t is not None and _busy(t) for _, tiles, _ in projects for _, t in tiles)
        return self.page(
            request,
            "dashboard.html",
            projects=projects,
            nav="dashboard",
            refresh=REFRESH_SECONDS if busy else None,
        )

    def _listing(self, request: Request, kind: str, heading: str) -> Response:
        groups = []
        for project in self.view.config.projects:
            targets = self.view.targets(project.repo)
            targets = sorted((t for t in targets if links.target_kind(t.id) == kind), key=_order)
            groups.append((project.repo, targets))
        busy = any(_busy(t) for _, targets in groups for t in targets)
        return self.page(
            request,
            "targets.html",
            groups=groups,
            kind=kind,
            heading=heading,
            nav=kind,
            refresh=REFRESH_SECONDS if busy else None,
        )

    async def prs(self, request: Request) -> Response:
        return self._listing(request, "pr", "Pull requests")

    async def branches(self, request: Request) -> Response:
        return self._listing(request, "branch", "Branches")

    async def tags(self, request: Request) -> Response:
        return self._listing(request, "tag", "Tags")

    def _repo(self, request: Request) -> Repo | None:
        repo = links.parse_repo(request.path_params["user"], request.path_params["repo"])
        if repo is None or self.view.config.project(repo) is None:
            return None
        return repo

    def _ident(self, request: Request) -> TargetId | None:
        repo = self._repo(request)
        if repo is None:
            return None
        if "n" in request.path_params:
            return links.parse_pr(repo, request.path_params["n"])
        return links.parse_ref(repo, request.path_params["ref"])

    async def target_page(self, request: Request) -> Response:
        ident = self._ident(request)
        target = self.view.target(ident) if ident is not None else None
        if ident is None or target is None:
            return self.error(request, 404, "This CI tests no such branch, tag or pull request.")
        selected = pick_job(target.jobs, request.query_params.get("test"))
        log_html, shown, total = (None, 0, 0)
        if selected is not None:
            log_html, shown, total = await self._log_tail(selected)
        try:
            history = await self.view.history(ident, HISTORY_LIMIT)
            history_error = False
        except Exception:
            log.exception("web: reading the history of %s", ident)
            history, history_error = [], True
        # ?history=<commit>: one older evaluation, shown above the list.
        wanted = links.parse_sha(request.query_params.get("history", ""))
        shown_entry = next((e for e in history if e.commit == wanted), None)
        failed = sum(1 for j in target.jobs if j.state is JobState.FAILURE)
        return self.page(
            request,
            "target.html",
            target=target,
            selected=selected,
            log_html=Markup(log_html) if log_html is not None else None,
            log_shown=shown,
            log_total=total,
            history=history,
            history_error=history_error,
            shown_entry=shown_entry,
            failed=failed,
            nav=links.target_kind(ident),
            refresh=REFRESH_SECONDS if _busy(target) else None,
        )

    async def commit_page(self, request: Request) -> Response:
        repo = self._repo(request)
        sha = links.parse_sha(request.path_params["sha"])
        if repo is None or sha is None:
            return self.error(request, 404, "No such project or commit (40 hex digits).")
        test = request.query_params.get("test")
        live = [t for t in self.view.targets(repo) if t.head == sha]
        if len(live) == 1:
            return RedirectResponse(links.target_url(live[0].id, test), 303)
        archived: list[tuple[TargetId, str, model.HistoryEntry | None]] = []
        try:
            for ident, history_commit in await self.view.builds_of_commit(repo, sha):
                entries = await self.view.history(ident, 50)
                entry = next((e for e in entries if e.commit == history_commit), None)
                archived.append((ident, history_commit, entry))
        except Exception:
            log.exception("web: reading the builds of %s %s", repo, sha)
        if not live and not archived:
            return self.error(request, 404, f"No build of commit {sha} in {repo}.")
        return self.page(
            request, "commit.html", repo=repo, sha=sha, live=live, archived=archived, test=test
        )

    async def _read_saved(self, request: Request) -> tuple[str, str, bytes] | Response:
        """(branch, commit, log) named by the URL, or the error page."""
        branch = links.parse_branch(request.path_params["branch"])
        commit = links.parse_sha(request.path_params["commit"])
        if branch is None or commit is None:
            return self.error(request, 404, "No such log (bad branch name or commit id).")
        try:
            data = await self.view.saved_log(branch, commit)
        except Exception:
            log.exception("web: reading the log of %s at %s", branch, commit)
            return self.error(request, 503, "DataKit could not be reached just now: try again.")
        if data is None:
            return self.error(request, 404, f"No saved log at {commit} of {branch}.")
        return branch, commit, data

    async def raw_log(self, request: Request) -> Response:
        """The saved log's bytes as they are, for scripts and downloads
        (``nosniff``: a browser never reads them as HTML)."""
        found = await self._read_saved(request)
        if isinstance(found, Response):
            return found
        return Response(found[2], media_type="text/plain; charset=utf-8")

    async def saved_log(self, request: Request) -> Response:
        found_log = await self._read_saved(request)
        if isinstance(found_log, Response):
            return found_log
        branch, commit, data = found_log
        found = self._find_job(branch)
        return self.page(
            request,
            "log.html",
            branch=branch,
            commit=commit,
            size=len(data),
            log_html=Markup(await render_log(data)),
            target=found[0] if found else None,
            job=found[1] if found else None,
            live=False,
            finished=True,
            saved=commit,
        )

    async def live_log(self, request: Request) -> Response:
        branch = links.parse_branch(request.path_params["branch"])
        if branch is None:
            return self.error(request, 404, "No such log (bad branch name).")
        live = self.view.live_log(branch)
        if live is None or live.closed:
            saved = self._saved_commit(branch)
            if saved is not None:
                return RedirectResponse(links.saved_log_url(branch, saved), 303)
        if live is None:
            return self.error(request, 404, f"No live log for {branch}: nothing runs there.")
        headers = {"x-accel-buffering": "no", "cache-control": "no-store"}
        if request.method == "HEAD":  # not a stream that lasts as long as the job
            return Response(media_type="text/html; charset=utf-8", headers=headers)
        found = self._find_job(branch)
        session = self.auth.session(request)
        request.state.session = session

        def parts(finished: bool, saved: str | None) -> tuple[str, str]:
            html = self._render(
                request,
                "log.html",
                branch=branch,
                commit=None,
                size=None,
                log_html=Markup(_MARKER),
                target=found[0] if found else None,
                job=found[1] if found else None,
                live=True,
                finished=finished,
                saved=saved,
            )
            head, _, tail = html.partition(_MARKER)
            return head, tail

        chunks = cast(Callable[[int], AsyncIterator[bytes]], live.chunks)

        async def body() -> AsyncIterator[bytes]:
            yield parts(False, None)[0].encode()
            renderer = AnsiRenderer()
            async for chunk in chunks(0):
                text = await _feed(renderer, chunk)
                if text:
                    yield text.encode()
            yield renderer.finish().encode()
            yield parts(True, self._saved_commit(branch))[1].encode()

        return StreamingResponse(
            body(),
            media_type="text/html; charset=utf-8",
            headers=headers,
        )

    # --- actions ------------------------------------------------------------------

    async def _act(
        self,
        request: Request,
        action: Callable[[dict[str, str]], Awaitable[Response]],
    ) -> Response:
        form = await self._form(request)
        why = self.auth.may_act(request, form)
        if why is not None:
            return self.error(request, 403, why)
        try:
            return await action(form)
        except Exception:
            # The store may be restarting under the CI: say so, keep serving.
            log.exception("web: %s %s", request.method, request.url.path)
            return self.error(request, 503, "DataKit could not be reached just now: try again.")

    async def rebuild(self, request: Request) -> Response:
        async def action(form: dict[str, str]) -> Response:
            branch = links.parse_branch(request.path_params["branch"])
            if branch is None or not await self.view.rebuild(branch):
                return self.error(request, 404, "No such run to rebuild.")
            return self._done(request, form, f"Marked {branch} for rebuild", self._back(branch))

        return await self._act(request, action)

    async def cancel(self, request: Request) -> Response:
        async def action(form: dict[str, str]) -> Response:
            branch = links.parse_branch(request.path_params["branch"])
            if branch is None:
                return self.error(request, 404, "No such run.")
            if not await self.view.cancel(branch):
                return self.error(request, 409, f"{branch} is not queued or running.")
            return self._done(request, form, f"Cancelled {branch}", self._back(branch))

        return await self._act(request, action)

    async def rebuild_query(self, request: Request) -> Response:
        """``POST /rebuild?failed=<target>`` (spec B.3 step 7): the target as
        ``--canary`` spells it (``me/p/heads/master``, ``me/p/prs/5``) or as
        its page's path (``me/p/ref/heads/master``, ``me/p/pr/5``)."""

        async def action(form: dict[str, str]) -> Response:
            text = request.query_params.get("failed") or form.get("failed") or ""
            return await self._rebuild_failed_of(request, form, self._parse_target(text))

        return await self._act(request, action)

    def _parse_target(self, text: str) -> TargetId | None:
        parts = text.strip("/").split("/")
        if len(parts) < 4:
            return None
        repo = links.parse_repo(parts[0], parts[1])
        if repo is None or self.view.config.project(repo) is None:
            return None
        kind, rest = parts[2], parts[3:]
        if kind in ("pr", "prs") and len(rest) == 1:
            return links.parse_pr(repo, rest[0])
        if kind in ("heads", "tags"):
            return links.parse_ref(repo, "/".join([kind, *rest]))
        if kind == "ref":
            return links.parse_ref(repo, "/".join(rest))
        return None

    async def rebuild_failed(self, request: Request) -> Response:
        async def action(form: dict[str, str]) -> Response:
            return await self._rebuild_failed_of(request, form, self._ident(request))

        return await self._act(request, action)

    async def _rebuild_failed_of(
        self, request: Request, form: dict[str, str], ident: TargetId | None
    ) -> Response:
        if ident is None or self.view.target(ident) is None:
            return self.error(request, 404, "This CI tests no such target.")
        count = await self.view.rebuild_failed(ident)
        back = links.target_url(ident)
        return self._done(request, form, f"Rebuilding {count} failed jobs", back)

    def _back(self, branch: str) -> str:
        found = self._find_job(branch)
        return links.target_url(found[0].id, found[1].name) if found else "/"

    # --- login --------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        next_url = links.safe_redirect(request.query_params.get("next"))
        if request.method == "GET":
            return self.page(request, "login.html", next_url=next_url, failed=None)
        form = await self._form(request)
        next_url = links.safe_redirect(form.get("next"))
        if not self.auth.enabled:
            return self.error(request, 403, NO_TOKEN_MESSAGE)
        session = self.auth.decode(request.cookies.get("datakit_ci_session"))
        if not self.auth.csrf_ok(session, form.get("csrf")):
            return self.error(request, 403, "Missing or wrong CSRF token: reload and try again.")
        if not self.auth.check_password(form.get("password", "")):
            return self.page(
                request, "login.html", 403, next_url=next_url, failed="Wrong password."
            )
        response = RedirectResponse(next_url, 303)
        self.auth.set_cookie(response, self.auth.new_session(admin=True))
        return response

    async def logout(self, request: Request) -> Response:
        if request.method == "GET":
            return self.page(request, "logout.html")
        form = await self._form(request)
        session = self.auth.decode(request.cookies.get("datakit_ci_session"))
        if not self.auth.csrf_ok(session, form.get("csrf")):
            return self.error(request, 403, "Missing or wrong CSRF token: reload and try again.")
        response = RedirectResponse("/", 303)
        self.auth.set_cookie(response, self.auth.new_session())
        return response

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "Internal error"
        if status == 404:
            detail = "There is no such page."
        return self.error(request, status, str(detail))


def create_app(
    view: CIView, *, token: str | None, registry: CollectorRegistry | None = None
) -> Starlette:
    """The web UI over ``view``. ``token`` is the admin password and bearer
    token (None: nobody may rebuild or cancel); ``registry`` is what
    ``/metrics`` serves (default: the services' registry)."""
    if registry is None:
        from datakit.bridges.service import REGISTRY

        registry = REGISTRY
    ui = WebUI(view, Auth(token), registry)
    routes = [
        Route("/", ui.dashboard),
        Route("/pr", ui.prs),
        Route("/branch", ui.branches),
        Route("/tag", ui.tags),
        Route("/login", ui.login, methods=["GET", "POST"]),
        Route("/logout", ui.logout, methods=["GET", "POST"]),
        Route("/metrics", ui.metrics),
        Route("/log/live/{branch}", ui.live_log),
        Route("/log/saved/{branch}/{commit}", ui.saved_log),
        Route("/log/raw/{branch}/{commit}", ui.raw_log),
        Route("/rebuild", ui.rebuild_query, methods=["POST"]),
        Route("/rebuild/{branch}", ui.rebuild, methods=["POST"]),
        Route("/log/rebuild/{branch}", ui.rebuild, methods=["POST"]),  # upstream's path
        Route("/cancel/{branch}", ui.cancel, methods=["POST"]),
        Route("/rebuild-failed/{user}/{repo}/pr/{n}", ui.rebuild_failed, methods=["POST"]),
        Route("/rebuild-failed/{user}/{repo}/ref/{ref:path}", ui.rebuild_failed, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        Route("/{user}/{repo}/pr/{n}", ui.target_page),
        Route("/{user}/{repo}/ref/{ref:path}", ui.target_page),
        Route("/{user}/{repo}/commit/{sha}", ui.commit_page),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: ui.not_found})
    app.add_middleware(_SecurityHeaders)
    return app


__all__ = ["WebUI", "create_app", "pick_job"]
