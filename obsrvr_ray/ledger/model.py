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


class _Decoded:
    """A transaction's part that may arrive encoded (LazyXdr): decoded on first read, its bytes kept."""

    __slots__ = ("key", "slot")

    def __init__(self, slot: str, key: str) -> None:
        self.slot, self.key = slot, key

    def __get__(self, tx: LedgerTransaction | None, owner: type | None = None):
        return self if tx is None else tx._open(self.slot, self.key)


class _Encoded(_Decoded):
    """A part's XDR bytes: as they came when it arrived encoded, else encoded once."""

    __slots__ = ()

    def __get__(self, tx: LedgerTransaction | None, owner: type | None = None):
        return self if tx is None else tx._bytes(self.slot, self.key)


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

    envelope = _Decoded("_envelope", "envelope")  # X.TransactionEnvelope
    meta = _Decoded("_meta", "meta")  # X.TransactionMeta
    fee_changes = _Decoded("_fee_changes", "fee")  # X.LedgerEntryChanges
    post_apply_fee_changes = _Decoded("_post_apply", "post")  # X.LedgerEntryChanges | None
    envelope_xdr = _Encoded("_envelope", "envelope")
    meta_xdr = _Encoded("_meta", "meta")
    fee_meta_xdr = _Encoded("_fee_changes", "fee")
    result_xdr = _Encoded("result", "result")

    @property
    def raw_meta(self):
        """The meta as handed over: a LazyXdr while nothing has read it, else the object."""
        return self._meta

    def _bytes(self, slot: str, key: str) -> bytes:
        if key not in self._xdr:
            self._xdr[key] = getattr(self, slot).to_xdr_bytes()
        return self._xdr[key]


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
