"""Prometheus metrics of the live app, with the seeds' names. One registry per process (each
Serve replica serves its own /metrics); the follower's numbers are read from its status at
scrape time, so every replica reports them."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class FollowerCollector:
    """Gauges read from the follower's status dict when Prometheus scrapes."""

    def __init__(self, status: Callable[[], dict | None]) -> None:
        self._status = status

    def collect(self):
        status = self._status() or {}
        values = {
            "current_ledger": ("Last ledger the live follower processed", (status.get("next_ledger") or 1) - 1),
            "committed_ledger": ("Last ledger committed to the dataset", status.get("committed_through") or 0),
            "network_latest_ledger": ("Latest ledger the RPC node reported", status.get("network_latest") or 0),
            "follower_lag_ledgers": ("Ledgers the follower is behind the network", status.get("lag") or 0),
            "ledgers_processed_total": ("Ledgers the live follower processed since it started",
                                        status.get("ledgers_processed", 0)),
            "export_errors_total": ("Ledgers recorded as failures by the live follower", status.get("failures", 0)),
            "gaps_filled_total": ("Ledgers missing from an RPC page and fetched again", status.get("gaps_filled", 0)),
            "lake_fallbacks_total": ("Ledgers read from the data lake (older than RPC retention)",
                                     status.get("lake_fallbacks", 0)),
            "circuit_breaker_state": ("RPC circuit breaker: 0 closed, 1 half open, 2 open",
                                      BREAKER_STATES.get(status.get("breaker", "closed"), 0)),
            "follower_chain_broken_ledger": ("The ledger whose previous-ledger hash does not match the last good "
                                             "ledger, while the follower holds before it; 0 when the chain links",
                                             status.get("chain_broken_at") or 0),
            "follower_up": ("1 when the follower answered the scrape", 1 if status else 0),
            "table_maintenance_runs_total": ("Scheduled compact/retain/vacuum runs completed",
                                             (status.get("maintenance") or {}).get("runs", 0)),
            "table_files_compacted_total": ("Small files rewritten by scheduled compaction",
                                            (status.get("maintenance") or {}).get("files_compacted", 0)),
            "table_maintenance_failing": ("1 when the last scheduled table maintenance failed",
                                          1 if (status.get("maintenance") or {}).get("last_error") else 0),
        }
        for name, (doc, value) in values.items():
            if name.endswith("_total"):
                family = CounterMetricFamily(name.removesuffix("_total"), doc)
            else:
                family = GaugeMetricFamily(name, doc)
            family.add_metric([], float(value))
            yield family
        yield from self._bulkheads(status.get("bulkheads") or {})

    @staticmethod
    def _bulkheads(bulkheads: dict[str, dict[str, int]]):
        """Per outbound dependency (rpc, lake): calls in flight, the bound, and calls refused."""
        in_use = GaugeMetricFamily("bulkhead_in_use", "Calls in flight to the dependency (bulkhead slots taken)",
                                   labels=["dependency"])
        limit = GaugeMetricFamily("bulkhead_limit", "Calls allowed in flight to the dependency at once",
                                  labels=["dependency"])
        rejected = CounterMetricFamily("bulkhead_rejections", "Calls refused because the bulkhead stayed full",
                                       labels=["dependency"])
        for dependency, slots in sorted(bulkheads.items()):
            in_use.add_metric([dependency], float(slots.get("in_use", 0)))
            limit.add_metric([dependency], float(slots.get("limit", 0)))
            rejected.add_metric([dependency], float(slots.get("rejected", 0)))
        yield from (in_use, limit, rejected)


class ApiMetrics:
    def __init__(self, follower_status: Callable[[], dict | None]) -> None:
        r = self.registry = CollectorRegistry()
        r.register(FollowerCollector(follower_status))
        self.requests = Counter("http_requests_total", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency", ["route"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.ws_connections = Gauge("websocket_connections", "Open WebSocket subscriptions", registry=r)
        self.ws_events = Counter("websocket_events_sent_total", "Events sent to WebSocket subscribers", registry=r)
        self.ws_encoded = Counter("websocket_ledgers_encoded_total", "Live ledgers encoded for WebSocket subscribers: "
                                  "JSON once per ledger, Arrow once per ledger and filter", ["format"], registry=r)
        self.ws_dropped = Counter("websocket_dropped_total", "Subscribers disconnected by the server", ["reason"],
                                  registry=r)
        self.flight_gets = Counter("flight_do_get_total", "Arrow Flight do_get calls", registry=r)
