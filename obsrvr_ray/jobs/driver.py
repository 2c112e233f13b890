"""The backfill driver: finish what a crash left, plan the chunks still to do, run them on the
cluster with bounded parallelism, merge the analytics, report.

Memory stays bounded however long the range: at most `2 x cluster CPUs` chunks are in flight
(read, waiting for a core, or being written), and a chunk's ledgers leave the object store
once its task has committed them. The driver never holds ledgers, only chunk summaries.

On a cluster of several nodes the job log says where each chunk ran (`chunk_committed`: the
node of its read and of its commit, what Ray ran again), when nodes join or leave
(`node_joined`, `node_lost`), and what each node did (`nodes_summary`, at the end).
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

from obsrvr_ray.actors.chunk_tasks import ChunkReader, commit_chunk
from obsrvr_ray.backfill_metrics import BackfillMetrics
from obsrvr_ray.chunks.job import Job, output_shape
from obsrvr_ray.chunks.output import chunk_failures, plan_failed, reset_settings, write_analytics
from obsrvr_ray.chunks.plan import Plan, Watermark, WorkUnit, plan
from obsrvr_ray.chunks.process import ChunkResult, Placement
from obsrvr_ray.chunks.report import BackfillReport
from obsrvr_ray.errors import Failure, TransientSourceError
from obsrvr_ray.logs import log_event
from obsrvr_ray.network import network_name
from obsrvr_ray.objectstore import open_store
from obsrvr_ray.progress import Progress
from obsrvr_ray.ranges import Range, normalize, overlaps, size
from obsrvr_ray.schema import TRANSFERS_TABLE
from obsrvr_ray.sources.reach import SOURCE_BACKOFF, PatienceNotice
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.maintenance import verify
from obsrvr_ray.table.tableset import SettingsChanged, TableSet

log = logging.getLogger("obsrvr_ray.backfill")


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


class NodeWatch:
    """The cluster's alive nodes, polled at most every `interval` seconds while a job runs; each
    change is logged (`node_joined` with its resources, `node_lost`). Also the tasks Ray is
    running again to rebuild objects of this driver lost with a node (`lineage_reconstruction`:
    the driver owns the reads, so their reconstruction is its core worker's)."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.alive = self._nodes()
        self.checked = time.monotonic()
        self.rebuilding: dict[str, int] = {}

    @staticmethod
    def _nodes() -> dict[str, dict]:
        return {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}

    def described(self) -> list[dict]:
        return [{"node": node, "resources": info.get("Resources", {})} for node, info in sorted(self.alive.items())]

    def poll(self, force: bool = False) -> None:
        self._lineage()
        if not force and time.monotonic() - self.checked < self.interval:
            return
        self.checked = time.monotonic()
        try:
            now = self._nodes()
        except Exception:  # the GCS is busy or restarting: look again next time
            return
        for node in sorted(now.keys() - self.alive.keys()):
            log_event(log, "node_joined", node=node, resources=now[node].get("Resources", {}), nodes=len(now))
        for node in sorted(self.alive.keys() - now.keys()):
            log_event(log, "node_lost", logging.WARNING, node=node, nodes=len(now))
        self.alive = now

    def _lineage(self) -> None:
        try:
            from ray._private.internal_api import get_local_ongoing_lineage_reconstruction_tasks

            ongoing = get_local_ongoing_lineage_reconstruction_tasks()
        except Exception:  # an internal API (Ray Data uses it too): without it, nothing is logged
            return
        rebuilding: dict[str, int] = {}
        for task, count in ongoing:
            rebuilding[task.name] = rebuilding.get(task.name, 0) + count
        if rebuilding and rebuilding != self.rebuilding:
            log_event(log, "lineage_reconstruction", logging.WARNING, tasks=rebuilding)
        self.rebuilding = rebuilding


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


def execute(job: Job, units: Plan, carried: dict[Range, tuple[Failure, ...]], report: BackfillReport,
            metrics: BackfillMetrics, progress: Progress, stop: StopSignal) -> None:
    """Run every unit: reads on the reader pool, commits as tasks, at most a window in flight.
    A chunk whose source was unavailable runs again after a backoff; other errors leave it
    uncommitted and reported."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    window = max(2, 2 * cpus)
    readers = [ChunkReader.remote(job.source)
               for _ in range(min(job.config.concurrent_readers, len(units)) or 1)]
    fresh = iter(units)  # units are made as they are submitted: the plan is never held whole
    pending: deque[WorkUnit] = deque()  # units due again after a source outage
    delayed: list[tuple[float, int, WorkUnit]] = []  # (when, tiebreak, unit)
    attempts: dict[Range, tuple[int, float]] = {}  # chunk -> (transient failures, time of the first)
    in_flight: dict[ray.ObjectRef, WorkUnit] = {}
    turn = 0
    watermark = Watermark(units.todo)
    nodes = NodeWatch()
    notice = PatienceNotice("obsrvr-ray backfill")  # an outage is said on the terminal, not only in the logs
    upcoming = next(fresh, None)
    while (upcoming is not None or pending or delayed or in_flight) and stop.received is None:
        nodes.poll()
        while delayed and delayed[0][0] <= time.monotonic():
            pending.append(heapq.heappop(delayed)[2])
        while (pending or upcoming is not None) and len(in_flight) < window:
            if pending:
                unit = pending.popleft()
            else:
                unit, upcoming = upcoming, next(fresh, None)
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
                    notice.unavailable(_original(exc), job.config.source_patience - (time.monotonic() - since))
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
    nodes.poll(force=True)


def execute_data(job: Job, units: Plan, carried: dict[Range, tuple[Failure, ...]],
                 report: BackfillReport, metrics: BackfillMetrics, progress: Progress, stop: StopSignal) -> None:
    """Run every unit as a Ray Data pipeline: a ChunkDatasource read task per unit (read, decode,
    extract, fused) into the TableDatasink (commit). A source outage that outlasts Ray's task
    retries fails the pipeline; the chunks it left uncommitted are reported for a rerun."""
    from obsrvr_ray.data.chunk_datasource import ChunkDatasource
    from obsrvr_ray.data.table_datasink import TableDatasink

    cpus = int(ray.cluster_resources().get("CPU", 1))
    made = list(units)  # Ray Data makes every read task up front
    source = ChunkDatasource(job.source, job.settings, made, carried)
    sink = TableDatasink(job.settings)
    watermark = Watermark(units.todo)
    context = ray.data.DataContext.get_current()
    # A source outage is retried (commits are idempotent); a bug or anything else fails at once, with its context.
    context.retried_map_errors, context.max_map_retries = transient_errors(), 3
    try:
        ray.data.read_datasource(source, override_num_blocks=len(made), concurrency=max(1, cpus)
                                 ).write_datasink(sink)
    except Exception as exc:  # the pipeline stopped: what it committed stays, the rest is for a rerun
        failed = _reason(exc)
    else:
        failed = None
    for result in sorted(sink.results, key=lambda r: r.chunk):
        _finished(report, metrics, progress, watermark, result)
    report.analytics = sink.analytics
    done = {r.chunk for r in sink.results}
    if failed is not None:  # the sink reports only a run that completed: ask the tables what was committed
        location = job.settings.output
        committed = TableSet(TableLocation(location.location, location.s3)).committed()
        done |= {u.chunk for u in made if committed.get(u.chunk, -1) >= u.generation}
    for unit in made:
        if unit.chunk not in done and stop.received is None:
            _unfinished(report, metrics, unit, failed or "not run")
    progress.tick()


def transient_errors() -> list[str]:
    """Ray Data's `retried_map_errors` for the transient source errors, and for them only: Ray
    Data matches each pattern against the task's error as `module.Class: message`
    (ray._common.retry.format_exception), so a pattern is a class's full name and the colon after
    it. Every subclass of TransientSourceError counts (the circuit breaker's, the bulkhead's)."""
    classes, todo = [], [TransientSourceError]
    while todo:
        cls = todo.pop()
        classes.append(cls)
        todo.extend(cls.__subclasses__())
    return [f"{cls.__module__}.{cls.__qualname__}: " for cls in classes]


def _original(exc: BaseException) -> BaseException:
    """The error a Ray task raised (a RayTaskError's `cause`)."""
    return exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc


_REASON_MAX = 500  # characters of a failed chunk's reason in the report


def _reason(exc: BaseException) -> str:
    """The original error of a Ray task error (its `cause`), in one line."""
    original = _original(exc)
    line = f"{type(original).__name__}: {original}".splitlines()[0]
    return line if len(line) <= _REASON_MAX else line[:_REASON_MAX - 3] + "..."


def _finished(report: BackfillReport, metrics: BackfillMetrics, progress: Progress, watermark: Watermark,
              result: ChunkResult) -> None:
    report.results.append(result)
    metrics.observe(result)
    metrics.current_ledger.set(watermark.add(result.chunk))
    progress.add(result.ledgers, result.events, len(result.failed_ledgers))
    chunk = f"{result.chunk[0]}-{result.chunk[1]}"
    log_event(log, "chunk_committed", chunk=chunk, generation=result.generation,
              ledgers=result.ledgers, rows=result.rows, events=result.events, failures=result.new_failures,
              commits=list(result.commits), seconds=round(result.seconds, 3),
              committed_here=result.committed_here, **_where(result.placement))
    if result.placement is not None and result.placement.rerun:
        where = result.placement
        log_event(log, "chunk_rerun", logging.WARNING, chunk=chunk, attempt=where.attempt,
                  read_attempt=where.read_attempt, reader_restarted=where.reader_restarted, node=where.node,
                  read_node=where.read_node, committed_here=result.committed_here, commits=list(result.commits))
    for failure in result.found:
        log_event(log, "ledger_failed", logging.WARNING, sequence=failure.sequence, object_key=failure.origin,
                  stage=failure.stage, error=failure.error)


def _where(placement: Placement | None) -> dict:
    """A chunk's placement as fields of its `chunk_committed` line."""
    if placement is None:
        return {}
    return {"node": placement.node, "read_node": placement.read_node, "transferred": placement.transferred,
            "raw_bytes": placement.raw_bytes, "attempt": placement.attempt, "read_attempt": placement.read_attempt,
            "reader_restarted": placement.reader_restarted,
            "read_seconds": round(placement.read_seconds, 4), "cpu_seconds": round(placement.cpu_seconds, 4),
            "read_cpu_seconds": round(placement.read_cpu_seconds, 4),
            "handoff_seconds": round(placement.handoff_seconds, 4)}


def node_summary(results: list[ChunkResult]) -> list[dict]:
    """What each node did: chunks committed (with their ledgers, task seconds and CPU seconds,
    how many came from another node's reader and their bytes, how many Ray ran again) and chunks
    read."""
    nodes: dict[str, dict] = {}

    def entry(node: str) -> dict:
        return nodes.setdefault(node, {"node": node, "chunks": 0, "ledgers": 0, "seconds": 0.0, "cpu_seconds": 0.0,
                                       "received": 0, "received_bytes": 0, "reruns": 0, "reads": 0,
                                       "read_bytes": 0, "read_seconds": 0.0})

    for result in results:
        where = result.placement
        if where is None:
            continue
        ran = entry(where.node)
        ran["chunks"] += 1
        ran["ledgers"] += result.ledgers
        ran["seconds"] += result.seconds
        ran["cpu_seconds"] += where.cpu_seconds
        ran["received"] += where.transferred
        ran["received_bytes"] += where.raw_bytes if where.transferred else 0
        ran["reruns"] += where.rerun
        read = entry(where.read_node)
        read["reads"] += 1
        read["read_bytes"] += where.raw_bytes
        read["read_seconds"] += where.read_seconds
    for node in nodes.values():
        for key in ("seconds", "cpu_seconds", "read_seconds"):
            node[key] = round(node[key], 3)
    return sorted(nodes.values(), key=lambda n: n["node"])


def _unfinished(report: BackfillReport, metrics: BackfillMetrics, unit: WorkUnit, why: str) -> None:
    report.unfinished.append((unit.chunk, why))
    metrics.chunks_failed.inc()
    log_event(log, "chunk_not_committed", logging.ERROR, chunk=unit.chunk_id, error=why)


def run(job: Job, stdout: TextIO = sys.stdout) -> int:
    """Run a resolved job (chunks.job.resolve: its source opened once, on the driver)."""
    config, settings = job.config, job.settings
    store = open_store(config.out, settings.output.s3)
    tables = TableSet(TableLocation(config.out, settings.output.s3), settings.output.compression)
    shape = output_shape(settings)
    try:
        tables.ensure(shape, settings.tables)
    except SettingsChanged as changed:
        reset_settings(tables, shape, changed, asked=config.reset_settings)
        log_event(log, "settings_reset", changed={k: {"was": was, "now": now}
                                                  for k, (was, now) in changed.differ.items()})
    committed = tables.committed()
    requested = config.ranges or normalize(committed)
    report = BackfillReport(job.source_description, network_name(settings.extract.passphrase), store.url,
                            requested, retry=config.retry_failed)
    if config.retry_failed:
        units, carried = plan_failed(committed, chunk_failures(tables, requested), requested)
    else:
        units, carried = plan(requested, committed, job.grid), {}
        report.skipped_chunks = sum(1 for c in committed if overlaps(requested, c))
    report.planned_chunks, report.planned_ledgers = len(units), units.ledgers
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
        log_event(log, "cluster_connected", resources=ray.cluster_resources(),
                  driver_node=ray.get_runtime_context().get_node_id(), nodes=NodeWatch().described())
        stop.install()
        progress = Progress(report.planned_ledgers, len(units), stdout, interval=config.progress_interval)
        engine = execute_data if config.engine == "data" else execute
        engine(job, units, carried, report, metrics, progress, stop)
        progress.close()
        if placed := node_summary(report.results):
            log_event(log, "nodes_summary", nodes=placed)
    report.interrupted = stop.received
    if stop.received is None:
        if settings.analytics and TRANSFERS_TABLE in settings.tables and not report.analytics:
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
