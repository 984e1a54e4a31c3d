"""The CI's web UI: Starlette + Jinja2 on Hypercorn's trio worker, in the
CI's own process (spec ci.md A.5, B.6, B.7). :func:`create_app` builds the
ASGI application over a :class:`datakit.ci.model.CIView`; :func:`serve_web`
serves it."""

from datakit.ci.web.app import create_app
from datakit.ci.web.serve import serve_web

__all__ = ["create_app", "serve_web"]
