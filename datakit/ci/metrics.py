"""The CI's Prometheus series (spec ci.md B.7), on the applications'
registry (:data:`datakit.bridges.service.REGISTRY`), so ``/metrics`` of the
web UI and ``--listen-prometheus`` show the same values."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from datakit.bridges.service import REGISTRY

JOBS = Counter(
    "datakit_ci_jobs",
    "Runs finished, by result (success, failure, cancelled).",
    ["result"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "datakit_ci_job_duration_seconds",
    "Wall-clock time of finished runs, from start to exit.",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf")),
    registry=REGISTRY,
)
QUEUE_LENGTH = Gauge(
    "datakit_ci_queue_length",
    "Runs waiting for a free slot in the pool.",
    registry=REGISTRY,
)
RUNNING = Gauge(
    "datakit_ci_running_jobs",
    "Runs executing now.",
    registry=REGISTRY,
)
ACTIVE_TARGETS = Gauge(
    "datakit_ci_active_targets",
    "Targets being tested, by type (pr, ref).",
    ["type"],
    registry=REGISTRY,
)
STATUS_UPDATES = Counter(
    "datakit_ci_status_updates",
    "Commit statuses written to github-metadata.",
    registry=REGISTRY,
)
for _result in ("success", "failure", "cancelled"):
    JOBS.labels(_result)
for _type in ("pr", "ref"):
    ACTIVE_TARGETS.labels(_type)
