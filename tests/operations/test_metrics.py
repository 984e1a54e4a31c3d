"""Scrape /metrics during real 9p traffic and check the counters moved by the right amounts."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from datakit.client.ninep_client import Client
from tests.operations.procs import datakit_process


def scrape(mport: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def commit_file(c: Client, branch: str, name: str, data: bytes) -> None:
    t = f"branch/{branch}/transactions/t"
    c.mkdir(f"branch/{branch}")
    c.mkdir(t)
    c.create(f"{t}/rw/{name}", data)
    c.write(f"{t}/ctl", b"commit")


def test_metrics_follow_traffic(tmp_path: Path) -> None:
    with datakit_process("--git", str(tmp_path / "repo")) as (port, mport, _):
        # The readiness probe's connection may not be closed on the server side yet.
        deadline = time.monotonic() + 10
        while (before := scrape(mport)).get(("datakit_9p_open_connections", ())) != 0:
            assert time.monotonic() < deadline, "the probe connection never closed"
            time.sleep(0.05)
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            during = scrape(mport)
            assert (
                value(during, "datakit_9p_open_connections")
                == value(before, "datakit_9p_open_connections") + 1
            )
            for i in range(5):
                commit_file(c, "master", f"f{i}", b"x" * 1000)
            c.mkdir("branch/master/transactions/open")
            mid = scrape(mport)
            assert value(mid, "datakit_transactions_open") == 1
            assert c.read("branch/master/ro/f3") == b"x" * 1000
        # The server notices the disconnect asynchronously; it must do so promptly.
        deadline = time.monotonic() + 10
        while value(after := scrape(mport), "datakit_9p_open_connections") != value(
            before, "datakit_9p_open_connections"
        ):
            assert time.monotonic() < deadline, "the closed connection is still counted"
            time.sleep(0.05)

    assert value(after, "datakit_commits_total") - value(before, "datakit_commits_total") == 5
    # Each commit: mkdir branch, mkdir transaction, create file, commit => 3 Tcreate each.
    created = value(after, "datakit_9p_requests_total", type="Tcreate", outcome="ok") - value(
        before, "datakit_9p_requests_total", type="Tcreate", outcome="ok"
    )
    assert created == 5 * 3 + 1
    written = value(after, "datakit_9p_written_bytes_total") - value(
        before, "datakit_9p_written_bytes_total"
    )
    assert written == 5 * (1000 + len(b"commit"))
    read = value(after, "datakit_9p_read_bytes_total") - value(
        before, "datakit_9p_read_bytes_total"
    )
    assert read == 1000
    assert value(after, "datakit_transactions_open") == 0  # discarded at disconnect
    assert value(after, "datakit_9p_request_duration_seconds_count") > value(
        before, "datakit_9p_request_duration_seconds_count"
    )
    # Upstream's metric keeps its name and type, present even without --auto-push.
    assert ("DataKit_git_push_duration_seconds_count", ()) in after
    assert value(after, "process_cpu_seconds_total") > 0
    assert any(name.startswith("python_gc_") for name, _ in after)


def test_merge_and_conflict_counters(tmp_path: Path) -> None:
    with datakit_process() as (port, mport, _):
        with Client.connect(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            commit_file(c, "master", "f", b"base")
            c.mkdir("branch/master/transactions/a")
            c.mkdir("branch/master/transactions/b")
            c.create("branch/master/transactions/a/rw/f", b"from a")
            c.create("branch/master/transactions/b/rw/f", b"from b")
            before = scrape(mport)
            c.write("branch/master/transactions/a/ctl", b"commit")
            with pytest.raises(Exception, match="Merge conflict"):
                c.write("branch/master/transactions/b/ctl", b"commit")
            after = scrape(mport)
    assert (
        value(after, "datakit_merge_conflicts_total")
        - value(before, "datakit_merge_conflicts_total")
        == 1
    )
    assert value(after, "datakit_commits_total") - value(before, "datakit_commits_total") == 1


def test_other_paths_are_404(tmp_path: Path) -> None:
    with datakit_process() as (_, mport, _):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{mport}/", timeout=10)
        assert err.value.code == 404


def test_request_counts_and_durations_are_exposed_as_prometheus_would() -> None:
    """The per-request counters are plain ints turned into metrics at scrape:
    `le` buckets are cumulative and inclusive, and the sum and count add up."""
    from datakit import ninep
    from datakit.metrics import _RequestStats

    stats = _RequestStats()
    for seconds in (0.0001, 0.0002, 0.003, 99.0):
        stats.count(ninep.Tread, "ok", seconds)
    stats.count(ninep.Twalk, "error", 0.0)
    requests, durations = list(stats.collect())
    counts = {
        tuple(s.labels.values()): s.value for s in requests.samples if s.name.endswith("_total")
    }
    assert counts == {("Tread", "ok"): 4, ("Twalk", "error"): 1}
    buckets = {s.labels["le"]: s.value for s in durations.samples if s.name.endswith("_bucket")}
    assert buckets["0.0001"] == 2  # 0.0 and 0.0001: a bound is inclusive
    assert buckets["0.00025"] == 3
    assert buckets["0.005"] == 4
    assert buckets["10.0"] == 4
    assert buckets["+Inf"] == 5
    total = {s.name: s.value for s in durations.samples if not s.name.endswith("_bucket")}
    assert total["datakit_9p_request_duration_seconds_count"] == 5
    assert abs(total["datakit_9p_request_duration_seconds_sum"] - 99.0033) < 1e-9
