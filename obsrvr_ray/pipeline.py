"""The single-process path from a source to a table file: read, decode, validate, build rows,
write. Failures are collected per ledger; the range always runs to its end."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from obsrvr_ray.errors import BugError, Failure, LedgerError
from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.ledger.validate import ChainChecker, Chained
from obsrvr_ray.progress import Timed
from obsrvr_ray.rows.ledgers import ledger_row
from obsrvr_ray.rows.transactions import transaction_rows
from obsrvr_ray.schema import rows_to_table
from obsrvr_ray.sinks.files import EXTENSIONS, Written, write_table
from obsrvr_ray.sources.base import CLOSE_META, LedgerRecord, decode_record
from obsrvr_ray.ttp.events import Skipped
from obsrvr_ray.ttp.extract import token_transfer_rows
from obsrvr_ray.ttp.filters import EventFilter
from obsrvr_ray.ttp.transfer_table import LedgerTransfers, TransferTable
from obsrvr_ray.ttp.verify import Finding, verify_ledger

C = TypeVar("C", bound=Chained)


@dataclass(frozen=True)
class ExtractOptions:
    passphrase: str
    events_from: str = "auto"  # token transfers: auto, core or operations
    verify: bool = False  # token transfers: run the three-way check on every ledger
    filter: EventFilter = field(default_factory=EventFilter)
    decoder: str = "fast"  # ours; "reference" decodes with stellar-sdk (the oracle)


@dataclass
class RunReport(Timed):
    """What a run did: enough for the summary screen and to retry exactly what failed."""

    source: str
    start: int
    end: int | None
    network: str = ""
    ledgers_ok: int = 0
    rows: int = 0
    failures: list[Failure] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    verified: int = 0
    skipped_events: int = 0  # contract events that are not token movements

    @property
    def ok(self) -> bool:
        return not self.failures and not self.findings

    def add_failure(self, exc: LedgerError, sequence: int | None, origin: str) -> None:
        self.failures.append(Failure.from_error(exc, sequence, origin))

    def summary(self, title: str, max_failures: int = 15) -> str:
        span = f"{self.start}-{self.end}" if self.end is not None else f"{self.start}- (followed)"
        rate = self.ledgers_ok / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"== {title} ==",
            f"source     {self.source}",
            f"network    {self.network}",
            f"range      {span}",
            f"ledgers    {self.ledgers_ok} ok, {len(self.failures)} failed"
            f"   ({rate:.1f} ledgers/s, {self.elapsed:.1f} s)",
            f"rows       {self.rows}",
        ]
        if self.skipped_events:
            lines.append(f"skipped    {self.skipped_events} contract events that are not token movements")
        if self.verified:
            lines.append(f"verified   {self.verified} ledgers three ways: {len(self.findings)} findings")
        for w in self.written:
            lines.append(f"wrote      {w.path}  ({w.rows} rows, {w.bytes:,} bytes)")
        lines += _described("findings", self.findings, max_failures)
        lines += _described("failures", self.failures, max_failures)
        lines.append("status     " + ("OK" if self.ok else "FAILED (exit code 1)"))
        return "\n".join(lines)


def _described(title: str, items: list[Failure] | list[Finding], most: int) -> list[str]:
    """The summary's list of findings or failures: the first `most`, then how many more."""
    if not items:
        return []
    lines = [f"{title}:", *(f"  - {item.describe()}" for item in items[:most])]
    if len(items) > most:
        lines.append(f"  … and {len(items) - most} more")
    return lines


def stream_ledgers(
    records: Iterable[LedgerRecord],
    passphrase: str,
    report: RunReport,
    *,
    chain_check: bool = True,
    on_record: Callable[[int | None], None] | None = None,
    decoder: str = "fast",
    checker: ChainChecker | None = None,
    read: Callable[[LedgerRecord], C] | None = None,
) -> Iterator[C]:
    """Decoded, validated ledgers of the records (a source's, or a chunk's); every failure is
    recorded and skipped. `checker`: one already holding the ledger before the first record, so
    its link is checked too (a backfill chunk links to the chunk before it). `read`: what reads a
    record instead of decoding it (token transfers straight from the bytes: chunks.process)."""
    if checker is None and chain_check:
        checker = ChainChecker()
    if read is None:
        read = functools.partial(decode_record, passphrase=passphrase, decoder=decoder)
    previous: tuple[int, str] | None = None  # the last named ledger and its origin
    for record in records:
        if record.sequence is not None:
            # Every path to rows passes here: a source that broke its contract (one record per
            # ledger, in order) is a bug in our code, and must stop the range rather than write a
            # ledger's rows twice.
            if previous is not None and record.sequence <= previous[0]:
                source = f"{report.source}: " if report.source else ""
                raise BugError(f"{source}ledger {record.sequence} ({record.origin}) came after ledger {previous[0]} "
                               f"({previous[1]}): a source must yield each ledger once, in order")
            previous = record.sequence, record.origin
        if on_record is not None:
            on_record(record.sequence)
        try:
            ledger = read(record)
            if checker is not None:
                checker.check(ledger)
        except LedgerError as exc:  # bad bytes, a broken chain: recorded, the range goes on
            report.add_failure(exc, record.sequence, record.origin)
            continue
        except BugError:  # a rule's bug, already named by its ledger, transaction and operation
            raise
        except Exception as exc:  # the decoders turn bad bytes into DecodeError: anything else is a bug
            raise BugError.at(f"ledger {record.sequence} ({record.origin})", exc) from exc
        report.ledgers_ok += 1
        yield ledger


def build_rows(kind: str, ledger: Ledger, options: ExtractOptions, report: RunReport) -> list[dict]:
    """Rows of one table for one ledger; ledger data that breaks a token-transfer rule becomes a
    failure naming the transaction and operation, and --verify findings are collected, never
    dropped. A bug raises a BugError naming the ledger (and, in a rule, the operation)."""
    try:
        return _table_rows(kind, ledger, options, report)
    except BugError:
        raise
    except Exception as exc:
        raise BugError.at(f"ledger {ledger.sequence} ({ledger.origin}), {kind} rows", exc) from exc


def _table_rows(kind: str, ledger: Ledger, options: ExtractOptions, report: RunReport) -> list[dict]:
    if kind == "ledgers":
        return [ledger_row(ledger)]
    if kind == "transactions":
        return transaction_rows(ledger)
    rows, events = token_transfer_rows(ledger, options.passphrase, options.events_from)
    record_skipped(report, events.skipped)
    if options.verify:
        verify_into(report, ledger, options.passphrase)
    return rows


def add_transfers(transfers: TransferTable, options: ExtractOptions, record: LedgerRecord,
                  ledger: Ledger | None = None) -> LedgerTransfers:
    """A record's token transfers added to `transfers`: from its bytes (the compiled walker), or
    from its decoded ledger (stellar-etl's rows; `ledger` when already decoded)."""
    if record.error is not None:
        raise record.error
    if record.kind == CLOSE_META:
        return transfers.add(record.data, sequence=record.sequence, origin=record.origin)
    return transfers.add_decoded(ledger or decode_record(record, options.passphrase, options.decoder))


def transfers_reader(transfers: TransferTable, options: ExtractOptions) -> Callable[[LedgerRecord], LedgerTransfers]:
    """stream_ledgers' `read` that adds each record's token transfers to `transfers`."""
    return functools.partial(add_transfers, transfers, options)


def record_transfers(report: RunReport, found: LedgerTransfers) -> None:
    """What reading a ledger's token transfers found, into the report (see record_skipped)."""
    record_skipped(report, found.errors)
    report.skipped_events += found.skipped


def reads_from_bytes(options: ExtractOptions) -> bool:
    """Token transfers can be read straight from the bytes: our decoder, no --verify (which
    compares views of the decoded ledger)."""
    return options.decoder == "fast" and not options.verify


def record_skipped(report: RunReport, skipped: Iterable[Skipped]) -> None:
    """Data that breaks a token-transfer rule is a failure naming the transaction and operation;
    a contract event that is not a token movement is only counted."""
    for item in skipped:
        if item.error:
            op = f" operation {item.op_index}" if item.op_index else ""
            report.failures.append(Failure(item.ledger, f"tx {item.tx_hash}{op}", "extract", item.reason))
        else:
            report.skipped_events += 1


def verify_into(report: RunReport, ledger: Ledger, passphrase: str) -> None:
    """--verify: the three-way check of one ledger, its findings collected."""
    result = verify_ledger(ledger, passphrase)
    report.verified += 1
    report.findings.extend(result.findings)


class TableWriter:
    """Collects rows; writes one file for a bounded range, or a part file every `flush_every`
    ledgers when following (each part complete on its own)."""

    def __init__(self, kind: str, out: str, fmt: str, *, compression: str, follow: bool, flush_every: int,
                 report: RunReport, s3=None, row_filter: EventFilter | None = None,
                 transfers: TransferTable | None = None) -> None:
        """`transfers`: the table token transfers are added to as they are read (read_transfers);
        the writer takes its rows from there instead of from `add`."""
        self.kind, self.out, self.fmt = kind, out, fmt
        self.row_filter = row_filter
        self.transfers = transfers
        self.compression, self.follow, self.flush_every = compression, follow, flush_every
        self.report, self.s3 = report, s3
        self.rows: list[dict] = []
        self.first: int | None = None
        self.last: int | None = None
        self.pending_ledgers = 0

    def add(self, sequence: int, rows: list[dict] = ()) -> None:
        """Ledger `sequence` was read: its rows (none when they went to `transfers`)."""
        self.rows.extend(rows)
        self.first = sequence if self.first is None else self.first
        self.last = sequence
        self.pending_ledgers += 1
        if self.follow and self.pending_ledgers >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.follow:
            if not self.pending_ledgers:
                return
            dest = f"{self.out.rstrip('/')}/{self.kind}-{self.first}-{self.last}{EXTENSIONS[self.fmt]}"
        else:
            dest = self.out
        table = self.transfers.take() if self.transfers is not None else rows_to_table(self.kind, self.rows)
        if self.row_filter is not None:
            table = self.row_filter.apply(table)
        self.report.rows += table.num_rows
        self.report.written.append(write_table(table, dest, self.fmt, compression=self.compression, s3=self.s3))
        self.rows, self.first, self.last, self.pending_ledgers = [], None, None, 0
