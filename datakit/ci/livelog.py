"""A running job's output, kept in memory so the web UI can stream it while
the job prints (spec ci.md B.4, upstream ``CI_live_log``).

One writer (the runner's pipe pump) appends bytes; any number of readers
follow it with :meth:`LiveLog.chunks`. Readers never hold the writer up:
there is no per-reader queue, every reader keeps its own offset into the one
buffer and is woken when something is appended, so a slow browser only
falls behind. Memory is bounded by the cap: a job that prints megabytes
keeps the first ``cap`` bytes, and when the log is closed one note line says
how many bytes were dropped (the head of a log usually explains a failure
better than a ring buffer's random middle, and a log that only grows is
what the streaming readers' offsets need).

Bytes are kept as they come (binary junk included); the web UI decodes them
with ``errors="replace"``.

All methods are for the trio thread that owns the log (no locking).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

DEFAULT_CAP = 16 << 20  # 16 MiB
# At most this much is handed to a reader at once, so a reader that starts
# on a full log does not copy it all in one go.
CHUNK_MAX = 64 << 10


def truncation_note(dropped: int) -> bytes:
    """The one line appended at close when output was dropped."""
    return f"\n[datakit-ci: output truncated: {dropped} more bytes not kept]\n".encode()


class LiveLog:
    """An append-only byte buffer with a cap, streamed to many readers.

    Implements :class:`datakit.ci.model.LiveLogView`. ``size`` is the number
    of bytes kept (what :meth:`snapshot` returns); ``dropped`` the number
    written beyond the cap.
    """

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        if cap < 0:
            raise ValueError(f"cap must not be negative: {cap}")
        self.cap = cap
        self._buffer = bytearray()
        self._dropped = 0
        self._closed = False
        # Replaced by a fresh event after each wake-up: readers that wait on
        # the old one all wake, later waiters wait for the next change.
        self._changed = trio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        return len(self._buffer)

    @property
    def dropped(self) -> int:
        return self._dropped

    def write(self, data: bytes | bytearray) -> None:
        """Append ``data``; what does not fit under the cap is counted, not
        kept. Writing to a closed log is a programming error."""
        if self._closed:
            raise RuntimeError("write to a closed LiveLog")
        if not data:
            return
        room = max(self.cap - len(self._buffer), 0)
        if room:
            self._buffer += data[:room]
            self._wake()
        self._dropped += max(len(data) - room, 0)

    def close(self) -> None:
        """Mark the end of the output (appending the truncation note if
        anything was dropped); readers finish once they have read it all.
        Closing twice is harmless."""
        if self._closed:
            return
        if self._dropped:
            self._buffer += truncation_note(self._dropped)
        self._closed = True
        self._wake()

    def snapshot(self) -> bytes:
        """Everything kept so far."""
        return bytes(self._buffer)

    def chunks(self, start: int = 0) -> AsyncIterator[bytes]:
        """The output from byte ``start`` on, as it is written: an async
        iterator that waits for more while the log is open and ends when it
        is closed and everything has been read. Use as
        ``async for chunk in log.chunks(): ...``."""
        if start < 0:
            raise ValueError(f"start must not be negative: {start}")
        return _Reader(self, start)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # For _Reader.
    def _read(self, offset: int) -> bytes:
        return bytes(self._buffer[offset : offset + CHUNK_MAX])


class _Reader:
    """One reader's position in a :class:`LiveLog`. A plain async iterator
    rather than an async generator, so abandoning it half-way (a browser
    that goes away) needs no ``aclose``."""

    def __init__(self, log: LiveLog, offset: int) -> None:
        self._log = log
        self._offset = offset

    def __aiter__(self) -> _Reader:
        return self

    async def __anext__(self) -> bytes:
        log = self._log
        while True:
            if self._offset < log.size:
                data = log._read(self._offset)
                self._offset += len(data)
                await trio.lowlevel.checkpoint()
                return data
            if log.closed:
                raise StopAsyncIteration
            await log._changed.wait()


__all__ = ["CHUNK_MAX", "DEFAULT_CAP", "LiveLog", "truncation_note"]
