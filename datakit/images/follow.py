"""`datakit image follow`: push each new head of a branch, like
``--auto-push`` does for Git.

Heads that arrive while a push runs are coalesced: the next push is of the
newest head only. A database or registry that goes away is retried with
back-off (1 s doubling to 60 s) and the follower carries on when it comes
back; a commit that cannot be made into an image (a ``.wh.`` name) is
reported once and skipped until the branch moves on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from datakit.client import AGAIN, Commit, Connection, DataKitError
from datakit.images.build import Outcome
from datakit.images.layers import LayerError
from datakit.images.oci import ImageFormatError
from datakit.images.registry import RegistryError
from datakit.images.target import TargetError

MAX_BACKOFF = 60.0


def follow(args: argparse.Namespace, push: Callable[[Connection, Commit], Outcome]) -> int:
    from datakit.images.main import PROG, DatabaseUnavailable, open_db

    done: str | None = None  # the last head pushed, or skipped as unpushable
    delay = 1.0

    def wanted(head: Commit | None) -> object:
        return head if head is not None and head.id != done else AGAIN

    while True:
        try:
            with open_db(args.db) as db:
                branch = db.branch(args.branch)
                while True:
                    branch.wait_for_head(wanted)
                    head = branch.head()  # the newest: a burst is one push
                    if head is None or head.id == done:
                        continue
                    try:
                        outcome = push(db, head)
                    except (LayerError, ImageFormatError) as e:
                        print(f"{PROG}: {head.id}: {e} (skipped)", file=sys.stderr, flush=True)
                        done = head.id
                        continue
                    print(outcome, flush=True)
                    done = head.id
                    delay = 1.0
        except (DatabaseUnavailable, RegistryError, TargetError) as e:
            print(f"{PROG}: {e}; retrying in {delay:.0f} s", file=sys.stderr, flush=True)
        except (DataKitError, OSError) as e:
            print(
                f"{PROG}: database {args.db}: {e}; retrying in {delay:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF)
