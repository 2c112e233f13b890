"""Prometheus metrics of a backfill job, in a registry of its own.

The driver counts what every committed chunk reports. Prometheus scrapes them while the job
runs (`--metrics-port`); the final values can also be written as a node_exporter textfile
(`--metrics-file`), since a batch job may end between two scrapes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, write_to_textfile

from obsrvr_ray.chunks.process import ChunkResult


class BackfillMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ledgers_processed = Counter("ledgers_processed_total",
                                         "Ledgers processed (rows written or failure recorded)", registry=r)
        self.batches_generated = Counter("batches_generated_total", "Chunks committed to the output", registry=r)
        self.processing_duration = Histogram(
            "processing_duration_seconds", "Time to decode, extract, write and commit one chunk",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), registry=r,
        )
        self.current_ledger = Gauge("current_ledger", "Highest ledger up to which every requested ledger is committed",
                                    registry=r)
        self.files_written = Counter("files_written_total", "Plain-file exports written (JSON lines, CSV)",
                                     ["table"], registry=r)
        self.table_commits = Counter("table_commits_total", "Delta table commits made by this run", ["table"],
                                     registry=r)
        self.export_errors = Counter("export_errors_total", "Failures recorded (per ledger, or per transaction for "
                                     "extraction errors)", ["stage"], registry=r)
        self.events_processed = Counter("events_processed_total", "Token-transfer events extracted", registry=r)
        self.rows_written = Counter("rows_written_total", "Rows committed", ["table"], registry=r)
        self.chunks_skipped = Counter("chunks_skipped_total", "Chunks an earlier run had committed", registry=r)
        self.chunk_retries = Counter("chunk_retries_total", "Chunks run again after a transient source error",
                                     registry=r)
        self.chunks_failed = Counter("chunks_failed_total", "Chunks left uncommitted (a rerun does them)", registry=r)
        self.ledgers_planned = Gauge("ledgers_planned", "Ledgers this run set out to process", registry=r)

    def observe(self, result: ChunkResult) -> None:
        self.ledgers_processed.inc(result.ledgers)
        self.batches_generated.inc()
        self.processing_duration.observe(result.seconds)
        self.events_processed.inc(result.events)
        for table, rows in result.rows.items():
            self.rows_written.labels(table).inc(rows)
        for table in result.commits:
            self.table_commits.labels(table).inc()
        for table, files in result.files.items():
            self.files_written.labels(table).inc(files)
        for failure in result.found:
            self.export_errors.labels(failure.stage).inc()

    def serve(self, port: int) -> int:
        """Serve /metrics from a thread; returns the port (0 asks for a free one)."""
        server, _thread = start_http_server(port, registry=self.registry)
        return server.server_port

    def write(self, path: str) -> None:
        write_to_textfile(path, self.registry)
