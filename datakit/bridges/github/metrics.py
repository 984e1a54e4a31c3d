"""Prometheus metrics of the GitHub bridge, in the applications' registry.

They live in :data:`datakit.bridges.service.REGISTRY`, which the bridges'
``--listen-prometheus`` serves (not the server's registry, whose 9p series
would read as zeros in a bridge). The API client and the webhook listener report
through a :class:`MetricsHook` rather than touching these objects, so tests
can watch what they report without scraping.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

from datakit.bridges.service import REGISTRY

CALLS = Counter(
    "datakit_github_calls_total",
    "GitHub API requests, by call and outcome (ok, not_modified, client_error, "
    "server_error, rate_limited, network_error, invalid_response).",
    ["call", "outcome"],
    registry=REGISTRY,
)
RATE_LIMIT_REMAINING = Gauge(
    "datakit_github_rate_limit_remaining",
    "X-RateLimit-Remaining of the last GitHub response that carried it.",
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "datakit_github_rate_limit_wait_seconds_total",
    "Seconds spent waiting for a GitHub rate limit to reset before a request.",
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "datakit_github_webhook_deliveries_total",
    "Webhook deliveries received, by outcome (accepted, ignored, forbidden, "
    "bad_request, overloaded).",
    ["outcome"],
    registry=REGISTRY,
)


class MetricsHook:
    """What the API client and the webhook listener report; this base class
    records into the Prometheus metrics above. Subclass to observe in tests."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], Any] = {}

    def call(self, call: str, outcome: str) -> None:
        """One HTTP request to GitHub finished with `outcome`."""
        child = self._calls.get((call, outcome))
        if child is None:
            child = self._calls[call, outcome] = CALLS.labels(call, outcome)
        child.inc()

    def rate_limit(self, remaining: int) -> None:
        RATE_LIMIT_REMAINING.set(remaining)

    def waited(self, seconds: float) -> None:
        RATE_LIMIT_WAIT_SECONDS.inc(seconds)

    def delivery(self, outcome: str) -> None:
        WEBHOOK_DELIVERIES.labels(outcome).inc()
