"""Prometheus metrics of one app, in a registry of its own (no process-wide state).

Exposed names (scrape ``GET /metrics``):

- ``crossrec_http_requests_total{route,method,status}`` and
  ``crossrec_http_request_duration_seconds{route}`` (histogram): every request.
- ``crossrec_http_errors_total{route}``: responses with a 5xx status.
- ``crossrec_http_aborted_total{route}``: requests whose client went away before the answer
  (recorded with status 499; not errors).
- ``crossrec_recommendations_total{domain,strategy,basis}``: answered recommendation
  requests; the fallback rate is the ``strategy="popular_fallback"`` share.
- ``crossrec_recommend_users_total{domain,user}``: ``user`` is ``known`` (in the bundle's
  training data), ``unknown`` (an id the model has never seen) or ``anonymous`` (no id); the
  unknown-user share is ``unknown`` over all.
- ``crossrec_events_total{domain}`` (stored) and ``crossrec_events_duplicate_total``.
- ``crossrec_model_info{version,model,target}``: 1 for the model being served (changes on a
  hot reload).
- ``crossrec_model_reloads_total{result}``: hot reloads, ``result`` ``ok`` or ``failed``.

``examples/alerts.yml`` turns them into recording and alerting rules. With several worker
processes (``crossrec serve --workers N``), ``$PROMETHEUS_MULTIPROC_DIR`` is set and every
worker's ``/metrics`` reports the sum over all workers (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServeMetrics:
    """The counters and histograms of one app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("crossrec_http_requests", "HTTP requests answered",
                                ("route", "method", "status"), registry=r)
        self.latency = Histogram("crossrec_http_request_duration_seconds",
                                 "Time to answer a request", ("route",), buckets=BUCKETS,
                                 registry=r)
        self.errors = Counter("crossrec_http_errors", "Responses with a 5xx status", ("route",),
                              registry=r)
        self.aborted = Counter("crossrec_http_aborted", "Requests whose client went away "
                               "before the answer (status 499, not an error)", ("route",),
                               registry=r)
        self.recommendations = Counter("crossrec_recommendations", "Recommendations answered",
                                       ("domain", "strategy", "basis"), registry=r)
        self.users = Counter("crossrec_recommend_users",
                             "Recommendation requests by kind of user", ("domain", "user"),
                             registry=r)
        self.events = Counter("crossrec_events", "Events stored", ("domain",), registry=r)
        self.duplicates = Counter("crossrec_events_duplicate", "Events ignored as duplicates",
                                  registry=r)
        self.model = Gauge("crossrec_model_info", "The model being served (value 1)",
                           ("version", "model", "target"), registry=r,
                           multiprocess_mode="livemax")
        self.reloads = Counter("crossrec_model_reloads", "Hot reloads of the served bundle",
                               ("result",), registry=r)

    def serving(self, version: str, model: str, target: str) -> None:
        """Mark the model being served (the previous one, if any, is cleared)."""
        self.model.clear()
        self.model.labels(version=version, model=model, target=target).set(1)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)
        if status >= 500:
            self.errors.labels(route=route).inc()

    def exposition(self) -> bytes:
        """The text exposition format of every metric (of all workers in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
