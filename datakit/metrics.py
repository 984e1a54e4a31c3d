"""Prometheus metrics of the server: one registry and its metric objects.

The server, the filesystem and the store-facing code update these directly;
nothing here does I/O. :mod:`datakit.metrics_http` serves the registry.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    Summary,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)


class _RequestStats:
    """`datakit_9p_requests_total` and `datakit_9p_request_duration_seconds`,
    counted in plain ints and turned into metrics only when scraped.

    Every request updates both. prometheus_client's labelled counter and
    histogram take a lock and walk the buckets per update: 8% of a small
    request's time in a profile of the kernel's `cat` sequence. Updates come
    from the event loop's thread only; a scrape copies before reading."""

    BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0)

    def __init__(self) -> None:
        self.counts: dict[tuple[type, str], int] = {}
        self.buckets = [0] * (len(self.BOUNDS) + 1)  # the last one: above every bound
        self.total_seconds = 0.0

    def count(self, msg_type: type, outcome: str, seconds: float) -> None:
        key = (msg_type, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.buckets[bisect_left(self.BOUNDS, seconds)] += 1
        self.total_seconds += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "datakit_9p_requests",
            "9p requests handled, by message type and outcome (ok, error, flushed).",
            labels=["type", "outcome"],
        )
        for (msg_type, outcome), n in sorted(
            self.counts.copy().items(), key=lambda item: (item[0][0].__name__, item[0][1])
        ):
            requests.add_metric([msg_type.__name__, outcome], n)
        yield requests
        cumulative, buckets = 0, []
        bounds = (*map(floatToGoString, self.BOUNDS), "+Inf")
        for bound, n in zip(bounds, self.buckets.copy(), strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        seconds = HistogramMetricFamily(
            "datakit_9p_request_duration_seconds",
            "Time from receiving a 9p request to sending its reply.",
        )
        seconds.add_metric([], buckets, self.total_seconds)
        yield seconds


_REQUEST_STATS = _RequestStats()
REGISTRY.register(_REQUEST_STATS)


#: count_request(message type, outcome, seconds): one handled request.
count_request = _REQUEST_STATS.count


BYTES_READ = Counter(
    "datakit_9p_read_bytes_total", "Payload bytes returned by Tread.", registry=REGISTRY
)
BYTES_WRITTEN = Counter(
    "datakit_9p_written_bytes_total", "Payload bytes accepted by Twrite.", registry=REGISTRY
)
CONNECTIONS = Gauge("datakit_9p_open_connections", "Open 9p connections.", registry=REGISTRY)
CONNECTIONS_TOTAL = Counter(
    "datakit_9p_accepted_connections_total", "9p connections accepted.", registry=REGISTRY
)
FIDS = Gauge("datakit_9p_open_fids", "Fids in use over all connections.", registry=REGISTRY)
PROTOCOL_ERRORS = Counter(
    "datakit_9p_protocol_errors_total",
    "Malformed frames received (the connection is answered with an error).",
    registry=REGISTRY,
)
TRANSACTIONS = Gauge(
    "datakit_transactions_open", "Transactions open over all connections.", registry=REGISTRY
)
COMMITS = Counter("datakit_commits_total", "Transactions committed.", registry=REGISTRY)
MERGES = Counter(
    "datakit_merges_total",
    "Merges performed (merge files and automatic merges at commit).",
    registry=REGISTRY,
)
CONFLICTS = Counter(
    "datakit_merge_conflicts_total",
    "Merges that ended in conflicts.",
    registry=REGISTRY,
)
LIVE_READERS = Gauge(
    "datakit_live_readers", "Reads blocked on a live stream file.", registry=REGISTRY
)
FETCHES = Counter(
    "datakit_fetches_total", "Fetches from remotes, by outcome.", ["outcome"], registry=REGISTRY
)
# Same name and type as upstream's summary so existing dashboards keep working.
PUSH_SECONDS = Summary(
    "DataKit_git_push_duration_seconds",
    "Time spent in each auto-push run.",
    registry=REGISTRY,
)
PUSHES = Counter(
    "datakit_pushes_total", "Auto-push runs, by outcome.", ["outcome"], registry=REGISTRY
)
GIT_REQUESTS = Counter(
    "datakit_git_requests_total",
    "Git protocol requests served (--listen-git), by service (clone, fetch, ls-remote, "
    "push) and outcome (ok, error, refused).",
    ["service", "outcome"],
    registry=REGISTRY,
)
GIT_BYTES_SENT = Counter(
    "datakit_git_sent_bytes_total", "Bytes sent to Git clients (--listen-git).", registry=REGISTRY
)
GIT_BYTES_RECEIVED = Counter(
    "datakit_git_received_bytes_total",
    "Bytes received from Git clients (--listen-git).",
    registry=REGISTRY,
)
GIT_CONNECTIONS = Gauge(
    "datakit_git_open_connections", "Open Git protocol connections.", registry=REGISTRY
)
REPLICA_LAG = Gauge(
    "datakit_replica_lag_seconds",
    "Replica (--mirror) only: seconds since it last saw its primary's branches and had "
    "them all; grows while the primary is unreachable or a fetch fails.",
    registry=REGISTRY,
)
REPLICA_UPDATES = Counter(
    "datakit_replica_updates_total",
    "Replica (--mirror) only: branch moves copied from the primary, by kind "
    "(fast-forward, forced, created, deleted).",
    ["kind"],
    registry=REGISTRY,
)
REPLICA_ERRORS = Counter(
    "datakit_replica_errors_total",
    "Replica (--mirror) only: failed polls or fetches of the primary.",
    registry=REGISTRY,
)
LOG_MESSAGES = Counter(
    "ocaml_logs_messages_total",
    "Log messages, by level and source (name kept from upstream).",
    ["level", "src"],
    registry=REGISTRY,
)


class LogCounter(logging.Handler):
    """Counts every log record, whatever the destination (upstream only did so for one)."""

    def emit(self, record: logging.LogRecord) -> None:
        LOG_MESSAGES.labels(record.levelname.lower(), record.name).inc()
