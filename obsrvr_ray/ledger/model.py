"""The decoded shape of a ledger: its header and its transactions in apply order.

Objects are stellar-sdk XDR classes, so every rule downstream reads the same field names as
the XDR definitions, whichever decoder produced them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

from stellar_sdk import xdr as X


@dataclass(eq=False)
class LedgerTransaction:
    """One transaction as applied: envelope, result, meta and the fee changes around it."""

    index: int  # 1-based position in apply order (the TOID transaction order)
    hash: bytes  # hash of the outer envelope (the fee bump's hash for fee bumps)
    envelope: X.TransactionEnvelope
    result: X.TransactionResultPair
    meta: X.TransactionMeta
    fee_changes: X.LedgerEntryChanges
    post_apply_fee_changes: X.LedgerEntryChanges | None = None

    @cached_property
    def envelope_xdr(self) -> bytes:
        return self.envelope.to_xdr_bytes()

    @cached_property
    def result_xdr(self) -> bytes:
        return self.result.to_xdr_bytes()

    @cached_property
    def meta_xdr(self) -> bytes:
        return self.meta.to_xdr_bytes()

    @cached_property
    def fee_meta_xdr(self) -> bytes:
        return self.fee_changes.to_xdr_bytes()


@dataclass(eq=False)
class Ledger:
    """A decoded ledger. `header_entry` carries the header and its hash."""

    sequence: int
    header_entry: X.LedgerHeaderHistoryEntry
    transactions: list[LedgerTransaction]
    close_meta_version: int | None  # None when the ledger was rebuilt from a per-transaction export
    tx_set_size: int  # envelopes in the transaction set (equals len(transactions) once validated)
    origin: str = ""
    close_meta: X.LedgerCloseMeta | None = field(default=None, repr=False)

    @property
    def header(self) -> X.LedgerHeader:
        return self.header_entry.header

    @property
    def hash(self) -> bytes:
        return self.header_entry.hash.hash

    @property
    def previous_hash(self) -> bytes:
        return self.header.previous_ledger_hash.hash

    @property
    def protocol_version(self) -> int:
        return self.header.ledger_version.uint32

    @property
    def close_time(self) -> int:
        return self.header.scp_value.close_time.time_point.uint64

    @property
    def closed_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.close_time, tz=dt.UTC)

    @cached_property
    def header_xdr(self) -> bytes:
        return self.header.to_xdr_bytes()
