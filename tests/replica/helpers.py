"""Primaries and replicas as real `datakit serve` processes, and what the
replica tests look at (heads over 9p, the replica's metrics and log)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen
from typing import IO, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from datakit.client import Connection, connect
from tests.operations.procs import datakit_ports

T = TypeVar("T")
Ports = dict[str, int]


@contextmanager
def primary(*args: str, git_port: int = 0) -> Iterator[tuple[Ports, Popen[bytes]]]:
    """A server with a Git endpoint (on `git_port`, or one it picks)."""
    with datakit_ports("--listen-git", f"tcp://127.0.0.1:{git_port}", *args) as started:
        yield started


@contextmanager
def replica(
    url: str, *args: str, log: IO[bytes] | None = None
) -> Iterator[tuple[Ports, Popen[bytes]]]:
    """A server following `url`; `log` gets its stderr."""
    out: int | IO[bytes] = subprocess.PIPE if log is None else log
    with datakit_ports("--mirror", url, *args, stderr=out) as started:
        yield started


def client(port: int) -> Connection:
    return connect(f"tcp://127.0.0.1:{port}")


def wait_for(fn: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """`fn()` once it is not None (or False): waits, never asserts speed."""
    deadline = time.monotonic() + timeout
    while True:
        found = fn()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def heads(port: int) -> dict[str, str]:
    """Every branch and its head commit, as a new client of that server sees
    them (a connection keeps listing the branches it opened, even gone)."""
    found = {}
    with client(port) as conn:
        for name in conn.branches():
            head = conn.branch(name).head()
            if head is not None:
                found[name] = head.id
    return found


def commit(conn: Connection, branch: str, name: str, data: bytes) -> str:
    """Commit one file on `branch`; the new head."""
    b = conn.branch(branch)
    with b.transaction() as t:
        t.create_or_replace_file(name, data)
        t.commit(f"write {name}")
    head = b.head()
    assert head is not None
    return head.id


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(port: int, name: str, **labels: str) -> float:
    return scrape(port).get((name, tuple(sorted(labels.items()))), 0.0)


def log_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")
