"""The decoded shape of a ledger: its header and its transactions in apply order.

Objects are stellar-sdk XDR classes, so every rule downstream reads the same field names as
the XDR definitions, whichever decoder produced them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

from stellar_sdk import xdr as X

from obsrvr_ray.xdr.lazy import LazyXdr


class LedgerTransaction:
    """One transaction as applied: envelope, result, meta and the fee changes around it.

    The fast decoder may hand over the envelope, meta and changes still encoded (LazyXdr);
    they are decoded on first read, and their bytes are served as they came."""

    __slots__ = ("_envelope", "_fee_changes", "_meta", "_post_apply", "_xdr", "hash", "index", "result")

    def __init__(self, index: int, hash: bytes, envelope, result: X.TransactionResultPair, meta,
                 fee_changes, post_apply_fee_changes=None) -> None:
        self.index = index  # 1-based position in apply order (the TOID transaction order)
        self.hash = hash  # hash of the outer envelope (the fee bump's hash for fee bumps)
        self.result = result
        self._envelope = envelope
        self._meta = meta
        self._fee_changes = fee_changes
        self._post_apply = post_apply_fee_changes
        self._xdr: dict[str, bytes] = {}

    def _open(self, slot: str, key: str):
        value = getattr(self, slot)
        if type(value) is LazyXdr:
            self._xdr[key] = value.to_xdr_bytes()
            value = value.value
            setattr(self, slot, value)
        return value

    @property
    def envelope(self) -> X.TransactionEnvelope:
        return self._open("_envelope", "envelope")

    @property
    def meta(self) -> X.TransactionMeta:
        return self._open("_meta", "meta")

    @property
    def raw_meta(self):
        """The meta as handed over: a LazyXdr while nothing has read it, else the object."""
        return self._meta

    @property
    def fee_changes(self) -> X.LedgerEntryChanges:
        return self._open("_fee_changes", "fee")

    @property
    def post_apply_fee_changes(self) -> X.LedgerEntryChanges | None:
        return self._open("_post_apply", "post")

    def _bytes(self, slot: str, key: str) -> bytes:
        if key not in self._xdr:
            self._xdr[key] = getattr(self, slot).to_xdr_bytes()
        return self._xdr[key]

    @property
    def envelope_xdr(self) -> bytes:
        return self._bytes("_envelope", "envelope")

    @property
    def meta_xdr(self) -> bytes:
        return self._bytes("_meta", "meta")

    @property
    def fee_meta_xdr(self) -> bytes:
        return self._bytes("_fee_changes", "fee")

    @property
    def result_xdr(self) -> bytes:
        return self._bytes("result", "result")


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
