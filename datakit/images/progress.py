"""A progress bar for blob uploads, on a terminal only.

Small uploads (a config, a one-file delta) finish before a bar would help,
so nothing is drawn below ``threshold`` bytes; the bar is redrawn at most
ten times a second and cleared when the upload ends.
"""

from __future__ import annotations

import time
from typing import TextIO

_MIB = 1024 * 1024


class Progress:
    def __init__(self, stream: TextIO, threshold: int = 4 * _MIB, width: int = 30) -> None:
        self.stream = stream
        self.threshold = threshold
        self.width = width
        self.total = 0
        self.sent = 0
        self._started = 0.0
        self._drawn = 0.0
        self._visible = False

    @classmethod
    def for_stream(cls, stream: TextIO) -> Progress | None:
        return cls(stream) if stream.isatty() else None

    def start(self, total: int) -> None:
        """A blob of ``total`` bytes starts uploading."""
        self.done()
        self.total, self.sent = total, 0
        self._started = time.monotonic()

    def add(self, n: int) -> None:
        self.sent += n
        if self.total < self.threshold:
            return
        now = time.monotonic()
        if now - self._drawn < 0.1 and self.sent < self.total:
            return
        self._drawn = now
        fraction = min(self.sent / self.total, 1.0) if self.total else 1.0
        filled = int(self.width * fraction)
        rate = self.sent / max(now - self._started, 1e-6) / _MIB
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] "
            f"{self.sent / _MIB:.1f}/{self.total / _MIB:.1f} MiB {rate:.1f} MiB/s"
        )
        self.stream.flush()
        self._visible = True

    def done(self) -> None:
        if self._visible:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._visible = False
