"""CI-20: the metrics of spec B.7; after one passing and one failing run,
`datakit_ci_jobs_total{result="success"}` = 1 and `{result="failure"}` = 1."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.ci.cihelpers import CIStack, wait_until

FAMILIES = {
    "datakit_ci_jobs": "counter",
    "datakit_ci_job_duration_seconds": "histogram",
    "datakit_ci_queue_length": "gauge",
    "datakit_ci_running_jobs": "gauge",
    "datakit_ci_active_targets": "gauge",
    "datakit_ci_status_updates": "counter",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_ci_20_metrics(ci_stack: CIStack) -> None:
    stack, m1 = ci_stack, ci_stack.m1
    stack.configure([
        {"name": "ok", "run": ["true"]},
        {"name": "bad", "run": ["sh", "-c", "echo boom; exit 3"]},
    ])
    ci = stack.start()
    stack.wait_finished(m1, "ok", "bad")
    assert ci.metrics is not None

    def jobs_counted() -> str | None:
        text = httpx.get(ci.metrics, timeout=30).text  # type: ignore[arg-type]
        got = samples(text)
        done = sum(v for (name, _labels), v in got.items() if name == "datakit_ci_jobs_total")
        return text if done >= 2 else None

    text = wait_until(jobs_counted, "two finished runs counted", why=stack.why)
    kinds = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert kinds.get(name) == kind, (name, kinds.get(name))
    got = samples(text)
    assert got[("datakit_ci_jobs_total", (("result", "success"),))] == 1
    assert got[("datakit_ci_jobs_total", (("result", "failure"),))] == 1
    assert got[("datakit_ci_job_duration_seconds_count", ())] == 2
    assert got[("datakit_ci_active_targets", (("type", "ref"),))] == 1
    assert got[("datakit_ci_running_jobs", ())] == 0
    assert got[("datakit_ci_queue_length", ())] == 0
    assert got[("datakit_ci_status_updates_total", ())] >= 2

    with stack.http() as http:  # the web UI's /metrics shows the same registry
        web = http.get("/metrics", headers=stack.bearer())
        assert web.status_code == 200, web.status_code
        assert samples(web.text)[("datakit_ci_jobs_total", (("result", "failure"),))] == 1
