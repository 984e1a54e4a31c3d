"""Store writes that may wait on the disk, run off the event loop.

A durable commit fsyncs its objects and its ref, and a ref lock held by
another process (`git` on the same repository) can make it wait seconds.
Done on the event loop, that would stall every connection; here it runs in a
worker thread while the loop goes on serving reads. The store's object
database is safe for one writer thread beside readers on the loop, so writes
are serialised (in arrival order: trio's lock is fair). Each write collects
the branch changes it makes (the store's ``changes=`` list) and they are
announced on the loop thread, where head.live cells and the auto-pusher
expect them, before the request that caused them is answered.

An in-memory store has nothing to wait for, so its writes run inline: a
thread round trip would cost more than the write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import trio

from datakit import store as st

T = TypeVar("T")


class StoreWriter:
    def __init__(self, store: st.Store) -> None:
        self.store = store
        self._lock = trio.Lock()

    async def off_loop(self, fn: Callable[..., T], *args: object) -> T:
        """Slow work that moves no branch (hashing and deflating a big file)
        in a worker thread, without the write lock: neither reads nor other
        commits wait for it. Not abandoned on cancellation, as writes."""
        return await trio.to_thread.run_sync(fn, *args)

    async def __call__(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args, changes=...)``: a store operation that moves branches
        (``Store.fast_forward``, ``Transaction.integrate``...); the changes
        it made are announced even if it fails half-way."""
        changes: list[st.BranchChange] = []
        write = functools.partial(fn, *args, changes=changes)
        if not self.store.on_disk:
            try:
                return write()
            finally:
                self.store.announce(changes)
        async with self._lock:
            try:
                # Not abandoned on cancellation (Tflush, disconnect): a write
                # that started finishes, and its changes are announced.
                return await trio.to_thread.run_sync(write)
            finally:
                self.store.announce(changes)
