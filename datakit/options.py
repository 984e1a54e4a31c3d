"""What every datakit command line shares (``datakit serve``, the bridges):
the log levels and how ``-q``, ``-v``, ``--verbosity`` and
``DATAKIT_VERBOSE`` pick one, the argparse type of a number of seconds, and
the error a flag value that cannot work raises.

A leaf module (it imports nothing of ours), so the applications, which use
only the client API of the database, may use it too.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping

LEVELS = {
    "quiet": logging.CRITICAL + 10,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
"""``--verbosity`` names (upstream's) and their logging levels."""


class UsageError(Exception):
    """A flag value argparse's per-option types cannot judge: the command
    prints it as one line and exits with its usage status."""


def log_level(
    *,
    quiet: bool = False,
    verbosity: str | None = None,
    verbose: int = 0,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """``-q`` first, then ``--verbosity``, then ``-v`` (info) / ``-vv``
    (debug), then ``DATAKIT_VERBOSE``; warning when none is given."""
    if quiet:
        return LEVELS["quiet"]
    if verbosity:
        return LEVELS[verbosity]
    if verbose:
        return logging.INFO if verbose == 1 else logging.DEBUG
    env = environ.get("DATAKIT_VERBOSE", "").strip().lower()
    if env:
        if env not in LEVELS:
            raise UsageError(f"DATAKIT_VERBOSE={env!r}: use one of {', '.join(LEVELS)}")
        return LEVELS[env]
    return logging.WARNING


def seconds(maximum: float = 86400) -> Callable[[str], float]:
    """An argparse type: a number of seconds, more than 0 and at most
    ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not 0 < value <= maximum:
            raise argparse.ArgumentTypeError(
                f"must be more than 0 and at most {maximum:g} seconds: {text!r}"
            )
        return value

    return parse
