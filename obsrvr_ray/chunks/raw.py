"""A chunk's ledgers as they come from the source, as one Arrow table: what reader actors put
in the object store and extraction tasks take out.

One row per ledger: its LedgerCloseMeta bytes, or the stage and cause of the error that left
it without any. Arrow keeps the bytes zero-copy through Ray's shared-memory object store.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from obsrvr_ray.chunks.plan import WorkUnit
from obsrvr_ray.errors import DecodeError, LedgerError, SourceError, TransientSourceError, ValidationError
from obsrvr_ray.sources.base import LedgerRecord, LedgerSource

RAW_SCHEMA = pa.schema(
    [
        ("sequence", pa.int64()),
        ("origin", pa.string()),
        ("kind", pa.string()),
        ("data", pa.large_binary()),
        ("stage", pa.string()),
        ("error", pa.string()),
    ]
)

_ERRORS: dict[str, type[LedgerError]] = {
    "source": SourceError,
    "decode": DecodeError,
    "validate": ValidationError,
}


def read_unit(source: LedgerSource, unit: WorkUnit) -> pa.Table:
    """Every ledger of the unit's segments, plus the ledger before each linked segment.

    A source error that retries and the circuit breaker could not clear (the store is down,
    not the ledger bad) raises instead of becoming failure rows: the chunk is then not
    committed and runs again, rather than being recorded as failed for a passing outage.
    """
    records: list[LedgerRecord] = []
    for segment in unit.segments:
        first = segment.start - 1 if segment.link else segment.start
        for record in source.records(first, segment.end):
            if isinstance(record.error, TransientSourceError):
                raise record.error
            records.append(record)
    return records_to_table(records)


def records_to_table(records: list[LedgerRecord]) -> pa.Table:
    return pa.table(
        {
            "sequence": [r.sequence for r in records],
            "origin": [r.origin for r in records],
            "kind": [r.kind for r in records],
            "data": [r.data for r in records],
            "stage": [r.error.stage if r.error is not None else None for r in records],
            "error": [r.error.cause if r.error is not None else None for r in records],
        },
        schema=RAW_SCHEMA,
    )


def table_to_records(table: pa.Table) -> Iterator[LedgerRecord]:
    for row in table.to_pylist():
        error = None
        if row["error"] is not None:
            error = _ERRORS.get(row["stage"], LedgerError)(row["error"], sequence=row["sequence"], origin=row["origin"])
        yield LedgerRecord(row["sequence"], row["origin"], data=row["data"], kind=row["kind"], error=error)
