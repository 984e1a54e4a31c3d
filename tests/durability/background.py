"""A function run in a thread while the test goes on (a client committing)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    """Runs ``fn`` in a thread at once; ``done`` is set when it returns or
    raises, and ``errors`` holds what it raised, for the test to assert on."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(fn,))
        self._thread.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # reported by the test thread
            self.errors.append(exc)
        finally:
            self.done.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background work did not finish"
        assert not self.errors, self.errors
