"""The bytes of a file being edited in a transaction, bounded in memory.

Small files (the common case) stay a ``bytearray``. Past a threshold the
content moves to an anonymous temporary file (unlinked at once, so a crash
leaves nothing), where a write at a far offset is a ``pwrite`` that leaves a
sparse hole and a truncate is an ``ftruncate``: what a client sends never
decides how much memory the server allocates. Every size is checked against
the configured maximum file size first (``FileTooLarge``, EFBIG).

Per file is not enough: a client can make many files, each just below the
threshold, or each past it (one descriptor per temporary file).  So the
contents of every transaction in the process share one budget: past
``Limits.memory_budget`` bytes in memory a growing file spills even below the
threshold, and past ``Limits.max_temp_files`` temporary files (default: a
quarter of the descriptor limit, the rest stays for connections and the
store) a spill fails with ``NoSpace`` (ENOSPC) instead of taking the last
descriptors every other client needs.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ._errors import FileTooLarge, InvalidOffset, NoSpace

CHUNK = 1 << 20  # streaming granularity (hashing, copying, deflating)


@dataclass(frozen=True, slots=True)
class Limits:
    """Memory bounds of one store (``datakit serve`` flags)."""

    # Above this many bytes a file's content in a transaction lives in a
    # temporary file rather than in memory.
    spill_threshold: int = 8 << 20
    # Largest file a transaction may hold: writes and truncates past it are EFBIG.
    max_file_size: int = 4 << 30
    # Byte budget of the blob cache shared by every reader of the store.
    cache_size: int = 64 << 20
    # Bytes all transactions' files may hold in memory together; past it they spill.
    memory_budget: int = 256 << 20
    # Temporary files (descriptors) all transactions' files may hold together;
    # None: a quarter of the soft descriptor limit.
    max_temp_files: int | None = None
    # Where temporary files go (None: TMPDIR).
    temp_dir: str | None = None

    def check_size(self, size: int) -> None:
        if size < 0:
            raise InvalidOffset(f"Negative offset {size}")
        if size > self.max_file_size:
            raise FileTooLarge()


class _Budget:
    """What the contents of every transaction in the process hold together."""

    def __init__(self) -> None:
        # Commits read contents from worker threads; reentrant because a garbage
        # Content's __del__ may run (and give back) in a thread that holds it.
        self._lock = threading.RLock()
        self.memory = 0  # bytes in memory
        self.files = 0  # temporary files open

    def add_memory(self, delta: int) -> None:
        with self._lock:
            self.memory += delta

    def take_file(self, limits: Limits) -> None:
        cap = limits.max_temp_files
        if cap is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            cap = max(1, (1 << 20 if soft == resource.RLIM_INFINITY else soft) // 4)
        with self._lock:
            full = self.files >= cap
            if not full:
                self.files += 1
        if full:  # raised outside the lock: a collection it may start calls give_file
            raise NoSpace(
                f"Too many large files in open transactions ({cap} temporary files); "
                "commit or close some transactions"
            )

    def give_file(self) -> None:
        with self._lock:
            self.files -= 1


BUDGET = _Budget()


def temporary_file(limits: Limits) -> int:
    """A read-write temporary file, unlinked at once (a crash leaves
    nothing); returns its descriptor, counted in the budget (NoSpace past
    it): its owner calls ``BUDGET.give_file()`` when it closes it."""
    BUDGET.take_file(limits)
    try:
        fd, path = tempfile.mkstemp(prefix="datakit-tmp-", dir=limits.temp_dir)
    except BaseException:
        BUDGET.give_file()
        raise
    os.unlink(path)
    return fd


class Content:
    """A growable byte string, in memory or in a temporary file."""

    __slots__ = ("__weakref__", "_fd", "_held", "_limits", "_mem", "_size", "version")

    def __init__(self, limits: Limits, data: bytes | bytearray = b"") -> None:
        self._limits = limits
        self._mem: bytearray | None = bytearray(data)
        self._held = 0  # bytes of _mem counted in BUDGET.memory
        self._fd = -1
        self._size = len(data)
        self.version = 0  # counts changes (a blob made meanwhile is stale)
        if self._needs_spill(self._size):
            self._spill()
        self._count_memory()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Release the temporary file now (also done when garbage)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            BUDGET.give_file()
        self._mem = bytearray()
        self._size = 0
        self._count_memory()

    def _count_memory(self) -> None:
        held = 0 if self._mem is None else len(self._mem)
        if held != self._held:
            BUDGET.add_memory(held - self._held)
            self._held = held

    def _needs_spill(self, size: int) -> bool:
        """Whether growing to ``size`` bytes must move the content to a file."""
        if self._mem is None:
            return False
        if size > self._limits.spill_threshold:
            return True
        growth = size - self._held
        return growth > 0 and BUDGET.memory + growth > self._limits.memory_budget

    @property
    def spilled(self) -> bool:
        return self._fd >= 0

    def __len__(self) -> int:
        return self._size

    def _spill(self) -> None:
        fd = temporary_file(self._limits)
        try:
            assert self._mem is not None
            view = memoryview(self._mem)
            while view:
                view = view[os.write(fd, view[:CHUNK]) :]
            os.ftruncate(fd, self._size)
        except BaseException:
            os.close(fd)
            BUDGET.give_file()
            raise
        self._fd = fd
        self._mem = None
        self._count_memory()

    def write(self, offset: int, data: bytes) -> None:
        """Overwrite at ``offset``; a gap past the end reads as zeros."""
        end = offset + len(data)
        self._limits.check_size(offset)
        self._limits.check_size(end)
        if self._needs_spill(end):
            self._spill()
        if self._mem is not None:
            buf = self._mem
            if offset > len(buf):
                buf.extend(bytes(offset - len(buf)))  # bounded by the threshold
            buf[offset:end] = data
            self._count_memory()
        else:
            view = memoryview(data)
            pos = offset
            while view:
                n = os.pwrite(self._fd, view, pos)
                view, pos = view[n:], pos + n
        self._size = max(self._size, end)
        self.version += 1

    def truncate(self, length: int) -> None:
        self._limits.check_size(length)
        if self._needs_spill(length):
            self._spill()
        if self._mem is not None:
            if length < len(self._mem):
                del self._mem[length:]
            else:
                self._mem.extend(bytes(length - len(self._mem)))
            self._count_memory()
        else:
            os.ftruncate(self._fd, length)
        self._size = length
        self.version += 1

    def read(self, offset: int, count: int) -> bytes:
        count = max(0, min(count, self._size - offset))
        if self._mem is not None:
            return bytes(self._mem[offset : offset + count])
        return pread_all(self._fd, offset, count)

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        for offset in range(0, self._size, size):
            yield self.read(offset, size)

    def getvalue(self) -> bytes:
        """All of it as one bytes object (small files, symlink targets)."""
        if self._mem is not None:
            return bytes(self._mem)
        return b"".join(self.chunks())


def pread_all(fd: int, offset: int, count: int) -> bytes:
    parts: list[bytes] = []
    while count > 0:
        chunk = os.pread(fd, min(count, CHUNK * 16), offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
        count -= len(chunk)
    return b"".join(parts)
