"""One work unit from raw ledgers to committed files: decode and validate (the hash chain
included, into the chunk from the ledger before it), build the tables' rows, filter, compute
the analytics partials, then stage, commit and publish them as one.

This is the step Ray runs as a task. It is plain Python over Arrow: it runs and is tested the
same without a cluster.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import pyarrow as pa

from obsrvr_ray.analytics.transfers import hourly_partial, largest_partial
from obsrvr_ray.chunks.plan import WorkUnit
from obsrvr_ray.chunks.raw import table_to_records
from obsrvr_ray.errors import BugError, Failure, LedgerError
from obsrvr_ray.ledger.decode import check_header_hash, peek_header
from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.ledger.validate import ChainChecker
from obsrvr_ray.objectstore import ObjectStore, open_store
from obsrvr_ray.pipeline import (
    ExtractOptions,
    RunReport,
    add_transfers,
    build_rows,
    reads_from_bytes,
    record_transfers,
    rows_to_table,
    stream_ledgers,
    transfers_reader,
    verify_into,
)
from obsrvr_ray.ranges import Range
from obsrvr_ray.schema import FAILURES, TRANSFERS_TABLE
from obsrvr_ray.sinks.layout import OutputSpec, write_exports
from obsrvr_ray.sources.base import CLOSE_META, LedgerRecord
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import ChunkCommit, TableSet
from obsrvr_ray.ttp.transfer_table import TransferTable

EXTRACT = "extract"  # a transaction's events could not be extracted; the ledger's other rows stand


def is_ledger_failure(failure: Failure) -> bool:
    """The ledger produced no rows (fetch, decode, validation): --retry-failed reads it again.
    An extraction error names one transaction of a ledger whose rows were written."""
    return failure.stage != EXTRACT


@dataclass(frozen=True)
class ChunkSettings:
    """Everything a task needs besides the unit and its ledgers."""

    tables: tuple[str, ...]
    output: OutputSpec
    extract: ExtractOptions
    chain_check: bool = True
    analytics: bool = True
    top_transfers: int = 10


@dataclass(frozen=True)
class Placement:
    """Where and how a chunk ran on a Ray cluster, as the Ray shell (`obsrvr_ray.actors.chunk_tasks`)
    records it: the node of its read and of its commit task, Ray's attempt numbers (more than 0:
    Ray ran it again, after a lost worker or node, or to rebuild a lost object from its lineage),
    and its costs. Times are measured inside the read and the task; `handoff_seconds` runs from
    the read's end to the task's start (waiting for a CPU, scheduling, the object's transfer)."""

    node: str  # the Ray node that ran the commit task
    read_node: str  # the Ray node of the reader that read the chunk's ledgers
    attempt: int = 0  # the commit task's attempt number (0: the first)
    read_attempt: int = 0  # the read's attempt number (0: the first)
    reader_restarted: bool = False  # the read ran in a reader Ray had restarted
    raw_bytes: int = 0  # the chunk's ledgers as they crossed the object store
    read_seconds: float = 0.0
    read_cpu_seconds: float = 0.0
    cpu_seconds: float = 0.0  # the commit task's CPU time (decode, extract, write, commit)
    handoff_seconds: float = 0.0

    @property
    def transferred(self) -> bool:
        """The ledgers crossed from one node's object store to another's."""
        return bool(self.read_node) and self.read_node != self.node

    @property
    def rerun(self) -> bool:
        """Ray ran the commit task or the read more than once."""
        return self.attempt > 0 or self.read_attempt > 0


@dataclass
class ChunkResult:
    chunk: Range
    generation: int
    committed_here: bool  # False: another attempt had committed this generation; its numbers are reported
    ledgers: int = 0  # processed: ok + failed
    failures: list[Failure] = field(default_factory=list)  # the chunk's failures after this generation
    new_failures: int = 0  # failures this generation found (the rest were carried from earlier ones)
    rows: dict[str, int] = field(default_factory=dict)
    events: int = 0  # token-transfer events extracted, before the filter
    files: dict[str, int] = field(default_factory=dict)  # plain-file exports written, per table
    commits: tuple[str, ...] = ()  # the tables this attempt committed (others already held the chunk)
    seconds: float = 0.0
    placement: Placement | None = None  # on a Ray cluster: where it ran (set by the task engine's task)

    @property
    def found(self) -> list[Failure]:
        """The failures this generation found (the others were carried from earlier ones)."""
        return self.failures[len(self.failures) - self.new_failures:]

    @property
    def failed_ledgers(self) -> list[int]:
        """Ledgers this generation processed that produced no rows."""
        return sorted({f.sequence for f in self.found if is_ledger_failure(f) and f.sequence is not None})


@functools.lru_cache(maxsize=4)
def _store(spec: OutputSpec) -> ObjectStore:
    """One client per worker process and output, reused across the chunks it processes."""
    return open_store(spec.location, spec.s3)


@functools.lru_cache(maxsize=4)
def _tables(spec: OutputSpec) -> TableSet:
    """The output's tables, loaded once per worker process and brought up to date per commit."""
    return TableSet(TableLocation(spec.location, spec.s3), spec.compression)


def header_only(record: LedgerRecord | None) -> Ledger | None:
    """The ledger before a chunk, as far as its (hash-checked) header: enough to check the link
    into the chunk. None when there is no valid header: that ledger's own chunk reports it and,
    as in a single pass, no link is checked across a failed ledger."""
    if record is None or record.data is None or record.kind != CLOSE_META:
        return None
    try:
        entry = peek_header(record.data, origin=record.origin)
        check_header_hash(entry, origin=record.origin)
    except LedgerError:
        return None
    return Ledger(sequence=entry.header.ledger_seq.uint32, header_entry=entry, transactions=[],
                  close_meta_version=None, tx_set_size=0, origin=record.origin)


def extract(unit: WorkUnit, raw: pa.Table, settings: ChunkSettings) -> tuple[dict[str, pa.Table], RunReport]:
    """Every table for the unit's ledgers as a reader put them in the object store."""
    return extract_records(unit, list(table_to_records(raw)), settings)


def extract_records(unit: WorkUnit, records: list[LedgerRecord], settings: ChunkSettings
                    ) -> tuple[dict[str, pa.Table], RunReport]:
    """Every table for the unit's ledgers (and the ledger before each linked segment); failures
    of the data are recorded in the report, bugs raised.

    Token transfers come straight from the ledgers' bytes (ttp.transfer_table: the compiled walker
    for TransactionMetaV4 ledgers); a unit that needs no other table is not decoded at all. The
    ledgers and transactions tables, --verify and the reference decoder read decoded ledgers."""
    opts = settings.extract
    report = RunReport(source="", start=unit.chunk[0], end=unit.chunk[1])
    by_sequence = {r.sequence: r for r in records}
    transfers = TransferTable(opts.passphrase, events_from=opts.events_from) if (
        TRANSFERS_TABLE in settings.tables and opts.decoder == "fast") else None
    rows: dict[str, list[dict]] = {t: [] for t in settings.tables if t != TRANSFERS_TABLE or transfers is None}
    from_bytes = transfers is not None and not rows and reads_from_bytes(opts)
    read = transfers_reader(transfers, opts) if from_bytes else None
    for segment in unit.segments:
        checker = ChainChecker() if settings.chain_check else None
        before = header_only(by_sequence.get(segment.start - 1)) if segment.link and checker else None
        if checker is not None and before is not None:
            checker.check(before)
        block = [r for r in records if r.sequence is not None and segment.start <= r.sequence <= segment.end]
        if from_bytes:
            for found in stream_ledgers(block, opts.passphrase, report, chain_check=settings.chain_check,
                                        checker=checker, read=read):
                record_transfers(report, found)
            continue
        for ledger in stream_ledgers(block, opts.passphrase, report,
                                     chain_check=settings.chain_check, decoder=opts.decoder, checker=checker):
            # Bad data is a failure in the report; a bug raises (a BugError naming the ledger) and
            # the chunk is not committed: a failure row would hide it, and a rerun would skip it.
            for t, table_rows in rows.items():
                table_rows.extend(build_rows(t, ledger, opts, report))
            if transfers is not None:
                _add_decoded_transfers(transfers, opts, by_sequence[ledger.sequence], ledger, report)
                if opts.verify:
                    verify_into(report, ledger, opts.passphrase)
    tables = {t: rows_to_table(t, r) for t, r in rows.items()}
    if transfers is not None:
        tables[TRANSFERS_TABLE] = transfers.take()
    return {t: tables[t] for t in settings.tables}, report


def _add_decoded_transfers(transfers: TransferTable, opts: ExtractOptions, record: LedgerRecord, ledger: Ledger,
                           report: RunReport) -> None:
    """The token transfers of a ledger decoded for the other tables: the walker reads its bytes
    again (faster than the rules on the decoded objects); both accepted it, or it is our bug."""
    try:
        found = add_transfers(transfers, opts, record, ledger)
    except LedgerError as exc:
        raise BugError.at(f"ledger {ledger.sequence} ({ledger.origin}): the decoder accepted it, the "
                          "token-transfer walker did not", exc) from exc
    record_transfers(report, found)


def build_commit(unit: WorkUnit, raw: pa.Table, settings: ChunkSettings, carried: tuple[Failure, ...] = (),
                 writer: str = "backfill") -> ChunkCommit:
    """Extract, filter and aggregate one unit. `carried`: failures of earlier generations of the
    chunk that this one does not revisit (extraction errors of ledgers already written, failed
    ledgers outside a retry's range)."""
    tables, report = extract(unit, raw, settings)
    return commit_from_rows(unit, tables, report.failures, settings, carried, writer)


def commit_from_rows(unit: WorkUnit, extracted: dict[str, pa.Table], found: list[Failure], settings: ChunkSettings,
                     carried: tuple[Failure, ...] = (), writer: str = "backfill") -> ChunkCommit:
    """The unit's commit from tables already extracted (the live follower extracts each page as
    it arrives, for subscribers, and commits the tables later)."""
    tables = dict(extracted)
    events = tables[TRANSFERS_TABLE].num_rows if TRANSFERS_TABLE in tables else 0
    volume = largest = None
    if TRANSFERS_TABLE in tables:
        tables[TRANSFERS_TABLE] = settings.extract.filter.apply(tables[TRANSFERS_TABLE])
        if settings.analytics:
            volume = hourly_partial(tables[TRANSFERS_TABLE])
            largest = largest_partial(tables[TRANSFERS_TABLE], settings.top_transfers)
    failures = [*carried, *found]
    failures_table = pa.Table.from_pylist(
        [{"sequence": f.sequence, "object_key": f.origin, "stage": f.stage, "error": f.error} for f in failures],
        schema=FAILURES,
    )
    return ChunkCommit(unit.chunk, unit.generation, tables, failures_table, volume, largest, ledgers=unit.ledgers,
                       events=events, new_failures=len(found), writer=writer)


def process_unit(unit: WorkUnit, raw: pa.Table, settings: ChunkSettings,
                 carried: tuple[Failure, ...] = ()) -> ChunkResult:
    """Build one unit's rows and commit them to the output's tables."""
    began = time.monotonic()
    return commit_chunk(build_commit(unit, raw, settings, carried), settings, began)


def commit_chunk(commit: ChunkCommit, settings: ChunkSettings, began: float) -> ChunkResult:
    """Commit to the tables (each once), then write the plain-file exports the settings ask for."""
    spec = settings.output
    outcome = _tables(spec).commit_chunk(commit, spec.partition_by)
    written = write_exports(_store(spec), commit, spec)
    return ChunkResult(
        chunk=commit.chunk, generation=commit.generation, committed_here=outcome.committed_here,
        ledgers=commit.ledgers,
        failures=[Failure(r["sequence"], r["object_key"], r["stage"], r["error"])
                  for r in commit.failures.to_pylist()],
        new_failures=commit.new_failures, rows={t: table.num_rows for t, table in commit.tables.items()},
        events=commit.events, files=written, seconds=time.monotonic() - began,
        commits=tuple(t for t, done in outcome.committed.items() if done),
    )
