"""The Git protocol served from the live store (``datakit serve
--listen-git``): clones and fetches, and pushes when the operator allows
them. Sits beside ``datakit.server`` (9p) over the same store."""

from .daemon import DEFAULT_PORT, GitContext, GitServer

__all__ = ["DEFAULT_PORT", "GitContext", "GitServer"]
