"""Prometheus metrics, one registry per app (so several apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "tamma_webhook_deliveries_total",
            "Webhook deliveries",
            ["platform", "event", "outcome"],
            registry=self.registry,
        )
        self.signature_failures = Counter(
            "tamma_webhook_signature_failures_total",
            "Webhook deliveries refused for a bad signature or token",
            ["platform"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tamma_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.pollers = Gauge(
            "tamma_task_queue_pollers",
            "Workers polling each of Tamma's task queues (from Temporal, every few seconds)",
            ["queue", "kind"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "tamma_task_queue_backlog",
            "Tasks waiting in each of Tamma's task queues (Temporal's approximate count)",
            ["queue", "kind"],
            registry=self.registry,
        )
        self.temporal_up = Gauge(
            "tamma_temporal_reachable",
            "1 when the server's last probe of Temporal got an answer",
            registry=self.registry,
        )
        self.waiting = Gauge(
            "tamma_tasks_waiting",
            "Tasks waiting for a person, by status (awaiting_approval, parked), from Temporal's visibility",
            ["status"],
            registry=self.registry,
        )
        self.workflows = Counter(
            "tamma_workflows_total",
            "Workflows started or signalled from the API",
            ["operation"],
            registry=self.registry,
        )
