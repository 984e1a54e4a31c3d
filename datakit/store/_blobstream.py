"""A big blob inflated as it is read: a worker thread inflates it into a
temporary file that every reader of the blob shares, and a reader of a range
not inflated yet waits for it.

Inflating a 256 MiB blob whole before its first byte costs about a third of
a second of zlib, on every open; streamed, the first byte is there after the
first chunk (a millisecond), the rest is inflated while the client reads, and
the next opener finds what is already done. Memory stays bounded: one chunk
of input and one of output in the worker; the content is in the temporary
file (counted with the transactions' ones in ``BUDGET``).

Waiting: :meth:`StreamedBlob.read` blocks (for threads and synchronous
callers); :meth:`StreamedBlob.notify` registers a callback instead, called
from the worker once a range is there (how an event loop waits without
blocking). A corrupt object sets an error every waiting and later reader
gets (``StoreError``), never a hang. The worker stops when the last reader
goes away, and the file is closed once both are done with it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from ._content import BUDGET, pread_all
from ._durable import write_all
from ._errors import StoreError

log = logging.getLogger("datakit.store")

# Produces a blob's content: calls ``emit`` with successive pieces (at most
# CHUNK bytes each); raises on a corrupt or missing object.
Producer = Callable[[Callable[[bytes], None]], None]
Callback = Callable[[], None]


class _Abandoned(Exception):
    """Every reader went away: the worker stops."""


class _Shared:
    """What a :class:`StreamedBlob` and its worker share. The descriptor is
    closed when both let go (``release``), whichever is last."""

    def __init__(self, sha: str, fd: int, size: int) -> None:
        self.sha = sha
        self.fd = fd
        self.size = size
        self.done = 0  # bytes inflated into fd so far
        self.error: StoreError | None = None
        self.abandoned = False
        self.cond = threading.Condition()
        self.waiters: list[tuple[int, Callback]] = []  # (end, callback)
        self.holders = 2  # the blob object and the worker
        self.closed = False  # fd closed, given back to BUDGET

    def release(self) -> None:
        with self.cond:
            self.holders -= 1
            last = self.holders == 0
        if last:
            os.close(self.fd)
            BUDGET.give_file()
            with self.cond:
                self.closed = True
                self.cond.notify_all()
            with _closing_lock:
                _closing.discard(self)

    def advance(self, n: int) -> None:
        with self.cond:
            self.done += n
            self.cond.notify_all()
            ready = self._take_waiters(self.done)
        _call(ready)

    def fail(self, error: StoreError) -> None:
        with self.cond:
            self.error = error
            self.cond.notify_all()
            ready = self._take_waiters(None)
        _call(ready)

    def _take_waiters(self, done: int | None) -> list[Callback]:
        """Callbacks whose range is there (all of them if ``done`` is None)."""
        if not self.waiters:
            return []
        ready = [cb for end, cb in self.waiters if done is None or end <= done]
        if ready:
            self.waiters = [(e, cb) for e, cb in self.waiters if done is not None and e > done]
        return ready


def _call(callbacks: list[Callback]) -> None:
    for cb in callbacks:
        try:
            cb()
        except Exception:  # an event loop gone (server stopping): nobody waits
            log.debug("a blob reader's wake-up failed", exc_info=True)


def _work(shared: _Shared, produce: Producer) -> None:
    def emit(data: bytes) -> None:
        if shared.abandoned:
            raise _Abandoned()
        if not data:
            return
        if shared.done + len(data) > shared.size:
            raise StoreError(f"object {shared.sha} is corrupt: longer than its declared size")
        write_all(shared.fd, data)
        shared.advance(len(data))

    try:
        produce(emit)
        if shared.done != shared.size:
            raise StoreError(f"object {shared.sha} is corrupt: shorter than its declared size")
    except _Abandoned:
        pass
    except StoreError as exc:
        _failed(shared, exc)
    except Exception as exc:  # zlib.error, OSError (disk full), a pack gone...
        _failed(shared, StoreError(f"object {shared.sha} cannot be read: {exc}"))
    finally:
        shared.release()


def _failed(shared: _Shared, error: StoreError) -> None:
    log.warning("%s", error)
    shared.fail(error)


# Inflations whose readers all went away but whose worker still holds the
# file (it stops at its next chunk): what ``let_go`` waits for.
_closing: set[_Shared] = set()
_closing_lock = threading.Lock()


def let_go(blobs: list[StreamedBlob], timeout: float = 5.0) -> None:
    """Drop the references in ``blobs`` (emptied) and wait until the files
    of every inflation nobody reads any more are given back: their workers
    stop at their next chunk (a millisecond or two), or end; bounded by
    ``timeout``. For a caller that found the temporary-file budget full."""
    blobs.clear()  # (the caller holds no other reference: they may go now)
    with _closing_lock:
        pending = list(_closing)
    deadline = time.monotonic() + timeout
    for one in pending:
        with one.cond:
            while not one.closed and (left := deadline - time.monotonic()) > 0:
                one.cond.wait(left)


class StreamedBlob:
    """Range reads of a blob a worker thread is inflating into ``fd`` (a
    temporary file this object owns, counted in ``BUDGET``)."""

    __slots__ = ("__weakref__", "_shared", "sha", "size")

    def __init__(self, sha: str, fd: int, size: int, produce: Producer) -> None:
        self.sha = sha
        self.size = size
        self._shared = _Shared(sha, fd, size)
        if size == 0:
            self._shared.holders -= 1  # nothing to inflate: no worker
            return
        worker = threading.Thread(
            target=_work, args=(self._shared, produce), name=f"datakit-inflate-{sha[:8]}"
        )
        worker.daemon = True
        try:
            worker.start()
        except BaseException:
            # No worker will ever let go of its hold: the opener closes the
            # file, so this object must not queue it for closing either.
            del self._shared
            raise

    def __del__(self) -> None:
        shared = getattr(self, "_shared", None)
        if shared is not None:
            shared.abandoned = True
            with _closing_lock:
                _closing.add(shared)
            shared.release()

    @property
    def complete(self) -> bool:
        """Whether all of it is inflated (reads never wait any more)."""
        return self._shared.done >= self.size

    @property
    def failed(self) -> bool:
        """Whether inflating it failed (reads past what is there raise)."""
        return self._shared.error is not None

    @property
    def inflated(self) -> int:
        """How many bytes from the start are there to read."""
        return self._shared.done

    def _end(self, offset: int, count: int) -> int:
        return max(0, min(offset + max(0, count), self.size))

    def notify(self, offset: int, count: int, callback: Callback) -> bool:
        """True if ``count`` bytes at ``offset`` can be read without waiting
        (or the object is corrupt: ``read`` raises at once); else False, and
        ``callback`` is called (once, from the worker thread) when they can."""
        end = self._end(offset, count)
        shared = self._shared
        with shared.cond:
            if end <= shared.done or shared.error is not None:
                return True
            shared.waiters.append((end, callback))
            return False

    def wait(self, offset: int, count: int, timeout: float | None = None) -> bool:
        """Block until ``count`` bytes at ``offset`` can be read (or the object
        is found corrupt); False if ``timeout`` passed first."""
        end = self._end(offset, count)
        shared = self._shared
        with shared.cond:
            return shared.cond.wait_for(
                lambda: end <= shared.done or shared.error is not None, timeout
            )

    def read(self, offset: int, count: int) -> bytes:
        end = self._end(offset, count)
        shared = self._shared
        if end <= shared.done:  # there already (always, once complete)
            return pread_all(shared.fd, offset, max(0, end - offset))
        self.wait(offset, count)
        if shared.error is not None and end > shared.done:
            raise StoreError(str(shared.error))
        return pread_all(shared.fd, offset, max(0, end - offset))
