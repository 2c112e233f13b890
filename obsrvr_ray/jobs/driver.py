"""The backfill driver: finish what a crash left, plan the chunks still to do, run them on the
cluster with bounded parallelism, merge the analytics, report.

Memory stays bounded however long the range: at most `2 x cluster CPUs` chunks are in flight
(read, waiting for a core, or being written), and a chunk's ledgers leave the object store
once its task has committed them. The driver never holds ledgers, only chunk summaries.
"""

from __future__ import annotations

import heapq
import logging
import signal
import sys
import threading
import time
from collections import deque
from typing import TextIO

import ray

from obsrvr_ray.actors.chunks import ChunkReader, commit_chunk
from obsrvr_ray.chunks.job import Job, output_shape, resolve
from obsrvr_ray.chunks.output import chunk_failures, plan_failed, write_analytics
from obsrvr_ray.chunks.plan import Watermark, WorkUnit, plan
from obsrvr_ray.chunks.process import TRANSFERS, ChunkResult
from obsrvr_ray.chunks.report import BackfillReport
from obsrvr_ray.config import BackfillConfig
from obsrvr_ray.errors import Failure, TransientSourceError
from obsrvr_ray.logs import log_event
from obsrvr_ray.metrics import BackfillMetrics
from obsrvr_ray.network import network_name
from obsrvr_ray.objectstore import open_store
from obsrvr_ray.progress import Progress
from obsrvr_ray.ranges import Range, normalize, overlaps, size
from obsrvr_ray.resilience import RetryPolicy
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.maintenance import verify
from obsrvr_ray.table.tableset import TableSet

log = logging.getLogger("obsrvr_ray.backfill")

# A chunk whose source was unavailable runs again after these delays (full jitter), for as long as
# --source-patience allows from its first failure; the readers' own retries and circuit breaker
# come first.
SOURCE_BACKOFF = RetryPolicy(base_delay=2.0, max_delay=60.0)


class StopSignal:
    """SIGINT/SIGTERM (`ray job stop`, Ctrl-C): stop submitting and report. Chunks in flight die
    with the driver; they were not committed, so the rerun does them."""

    def __init__(self) -> None:
        self.received: int | None = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received = signum


def connect(address: str | None) -> None:
    """Join the given cluster, else RAY_ADDRESS or the latest `ray start` cluster on this
    machine; when there is none (or it is gone), start a local one."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except ConnectionError:
        if address is not None:
            raise
        ray.init(address="local", logging_level=logging.WARNING, log_to_driver=True)


def execute(job: Job, units: list[WorkUnit], carried: dict[Range, tuple[Failure, ...]], report: BackfillReport,
            metrics: BackfillMetrics, progress: Progress, stop: StopSignal) -> None:
    """Run every unit: reads on the reader pool, commits as tasks, at most a window in flight.
    A chunk whose source was unavailable runs again after a backoff; other errors leave it
    uncommitted and reported."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    window = max(2, 2 * cpus)
    readers = [ChunkReader.remote(job.config.source, job.source_options)
               for _ in range(min(job.config.concurrent_readers, len(units)) or 1)]
    pending = deque(units)
    delayed: list[tuple[float, int, WorkUnit]] = []  # (when, tiebreak, unit)
    attempts: dict[Range, tuple[int, float]] = {}  # chunk -> (transient failures, time of the first)
    in_flight: dict[ray.ObjectRef, WorkUnit] = {}
    turn = 0
    watermark = Watermark(units)
    while (pending or delayed or in_flight) and stop.received is None:
        while delayed and delayed[0][0] <= time.monotonic():
            pending.append(heapq.heappop(delayed)[2])
        while pending and len(in_flight) < window:
            unit = pending.popleft()
            raw = readers[turn % len(readers)].read.remote(unit)
            turn += 1
            in_flight[commit_chunk.remote(unit, raw, job.settings, carried.get(unit.chunk, ()))] = unit
        if not in_flight:
            time.sleep(min(0.5, max(0.0, delayed[0][0] - time.monotonic())))
            continue
        done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
        for ref in done:
            unit = in_flight.pop(ref)
            try:
                result: ChunkResult = ray.get(ref)
            except TransientSourceError as exc:  # Ray re-raises the reader's error as an instance of its class
                count, since = attempts.get(unit.chunk, (0, time.monotonic()))
                attempts[unit.chunk] = (count + 1, since)
                wait = SOURCE_BACKOFF.delay(count + 1)
                if time.monotonic() + wait - since <= job.config.source_patience:
                    report.retries += 1
                    metrics.chunk_retries.inc()
                    heapq.heappush(delayed, (time.monotonic() + wait, turn, unit))
                    log_event(log, "chunk_retry", logging.WARNING, chunk=unit.chunk_id, error=_reason(exc),
                              in_seconds=round(wait, 1))
                    continue
                _unfinished(report, metrics, unit, f"source unavailable for {job.config.source_patience:g} s: "
                            f"{_reason(exc)}")
            except Exception as exc:  # a worker lost more often than Ray retries, a bug, a store error
                _unfinished(report, metrics, unit, _reason(exc))
            else:
                _finished(report, metrics, progress, watermark, result)
        progress.tick()


def execute_data(job: Job, units: list[WorkUnit], carried: dict[Range, tuple[Failure, ...]],
                 report: BackfillReport, metrics: BackfillMetrics, progress: Progress, stop: StopSignal) -> None:
    """Run every unit as a Ray Data pipeline: a ChunkDatasource read task per unit (read, decode,
    extract, fused) into the TableDatasink (commit). A source outage that outlasts Ray's task
    retries fails the pipeline; the chunks it left uncommitted are reported for a rerun."""
    from obsrvr_ray.data.chunks import ChunkDatasource
    from obsrvr_ray.data.sink import TableDatasink

    cpus = int(ray.cluster_resources().get("CPU", 1))
    source = ChunkDatasource(job.config.source, job.source_options, job.settings, units, carried)
    sink = TableDatasink(job.settings)
    watermark = Watermark(units)
    try:
        ray.data.read_datasource(source, override_num_blocks=len(units), concurrency=max(1, cpus),
                                 ray_remote_args={"retry_exceptions": [TransientSourceError]}
                                 ).write_datasink(sink)
    except Exception as exc:  # the pipeline stopped: what it committed stays, the rest is for a rerun
        failed = _reason(exc)
    else:
        failed = None
    for result in sorted(sink.results, key=lambda r: r.chunk):
        _finished(report, metrics, progress, watermark, result)
    report.analytics = sink.analytics
    done = {r.chunk for r in sink.results}
    for unit in units:
        if unit.chunk not in done and stop.received is None:
            _unfinished(report, metrics, unit, failed or "not run")
    progress.tick()


def _reason(exc: BaseException) -> str:
    """The original error of a Ray task error (its `cause`), in one line."""
    original = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc
    line = f"{type(original).__name__}: {original}".splitlines()[0]
    return line if len(line) <= 500 else line[:497] + "..."


def _finished(report: BackfillReport, metrics: BackfillMetrics, progress: Progress, watermark: Watermark,
              result: ChunkResult) -> None:
    report.results.append(result)
    metrics.observe(result)
    metrics.current_ledger.set(watermark.add(result.chunk))
    progress.add(result.ledgers, result.events, len(result.failed_ledgers))
    log_event(log, "chunk_committed", chunk=f"{result.chunk[0]}-{result.chunk[1]}", generation=result.generation,
              ledgers=result.ledgers, rows=result.rows, events=result.events, failures=result.new_failures,
              commits=list(result.commits), seconds=round(result.seconds, 3),
              committed_here=result.committed_here)
    for failure in result.found:
        log_event(log, "ledger_failed", logging.WARNING, sequence=failure.sequence, object_key=failure.origin,
                  stage=failure.stage, error=failure.error)


def _unfinished(report: BackfillReport, metrics: BackfillMetrics, unit: WorkUnit, why: str) -> None:
    report.unfinished.append((unit.chunk, why))
    metrics.chunks_failed.inc()
    log_event(log, "chunk_not_committed", logging.ERROR, chunk=unit.chunk_id, error=why)


def run(config: BackfillConfig, stdout: TextIO = sys.stdout) -> int:
    job = resolve(config)
    settings = job.settings
    store = open_store(config.out, settings.output.s3)
    tables = TableSet(TableLocation(config.out, settings.output.s3), settings.output.compression)
    tables.ensure(output_shape(settings), settings.tables)
    committed = tables.committed()
    requested = config.ranges or normalize(committed)
    report = BackfillReport(job.source_description, network_name(settings.extract.passphrase), store.url,
                            requested, retry=config.retry_failed)
    if config.retry_failed:
        units, carried = plan_failed(committed, chunk_failures(tables, requested), requested)
    else:
        units, carried = plan(requested, committed, job.grid), {}
        report.skipped_chunks = sum(1 for c in committed if overlaps(requested, c))
    report.planned_chunks, report.planned_ledgers = len(units), sum(u.ledgers for u in units)
    log_event(log, "run_started", source=job.source_description, output=store.url, ledgers=size(requested),
              chunks=len(units), ledgers_to_do=report.planned_ledgers, retry_failed=config.retry_failed)
    metrics = BackfillMetrics()
    metrics.ledgers_planned.set(report.planned_ledgers)
    metrics.chunks_skipped.inc(report.skipped_chunks)
    if config.metrics_port is not None:
        log_event(log, "metrics_serving", port=metrics.serve(config.metrics_port))
    stop = StopSignal()
    if units:
        connect(config.ray_address)
        log_event(log, "cluster_connected", resources=ray.cluster_resources())
        stop.install()
        progress = Progress(report.planned_ledgers, len(units), stdout, interval=config.progress_interval)
        engine = execute_data if config.engine == "data" else execute
        engine(job, units, carried, report, metrics, progress, stop)
        progress.close()
    report.interrupted = stop.received
    if stop.received is None:
        if settings.analytics and TRANSFERS in settings.tables and not report.analytics:
            report.analytics = write_analytics(tables, store, settings)
        report.failed_chunks = len(chunk_failures(tables, requested))
        if config.verify_output:
            report.problems = verify(tables, settings.tables)
    report.finished = time.monotonic()
    if config.metrics_file:
        metrics.write(config.metrics_file)
    log_event(log, "run_finished", exit_code=report.exit_code(), chunks=len(report.results),
              ledgers=report.ledgers, failed_ledgers=report.failed_ledgers, unfinished=len(report.unfinished),
              seconds=round(report.elapsed, 3))
    print(report.summary(), file=stdout, flush=True)
    return report.exit_code()
