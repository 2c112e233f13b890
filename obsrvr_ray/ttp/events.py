"""The token-transfer event: one movement of value, with where in the ledger it happened; and
what reading a ledger's token transfers yields: the events in emission order, and every event
or operation that could not be read, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from obsrvr_ray.ttp.assets import Asset

TRANSFER, MINT, BURN, CLAWBACK, FEE = "transfer", "mint", "burn", "clawback", "fee"
KINDS = (TRANSFER, MINT, BURN, CLAWBACK, FEE)


@dataclass(frozen=True, slots=True)
class MuxedInfo:
    """Who inside a shared account received value: a muxed id, or the memo text or hash."""

    id: int | None = None
    text: str | None = None
    hash: bytes | None = None


class Event(NamedTuple):
    """A tuple, because a ledger has thousands of them and tuples are the cheapest to build."""

    kind: str
    amount: int  # stroops or the token's base unit; full int64 / i128 range; negative only for fee refunds
    asset: Asset | None  # None: a custom SEP-41 token, named by its contract
    contract_id: str  # C strkey of the token contract (the SAC for classic assets)
    tx_index: int  # 1-based apply order
    tx_hash: str
    op_index: int | None = None  # 1-based; None for fee events
    from_: str | None = None
    to: str | None = None
    to_muxed: MuxedInfo | None = None


class MalformedEvent(ValueError):
    """A contract event that does not follow SEP-41 (skipped with its reason, never fatal)."""


class TransferError(ValueError):
    """The ledger data contradicts a token-transfer rule (e.g. a claim with no removed balance)."""


@dataclass(frozen=True)
class Skipped:
    """A contract event that is not a token movement, or a rule that could not be applied."""

    ledger: int
    tx_hash: str
    op_index: int | None
    reason: str
    error: bool = False  # True: the data contradicts a rule (reported as a failure); False: not a token event


@dataclass
class TxEvents:
    """One transaction's events: fee charged, operation events, the Soroban refund if any."""

    fees: list[Event] = field(default_factory=list)
    ops: list[Event] = field(default_factory=list)

    @property
    def charged(self) -> list[Event]:
        return self.fees[:1]

    @property
    def refunds(self) -> list[Event]:
        return self.fees[1:]

    def all(self) -> list[Event]:
        return self.fees + self.ops


@dataclass
class LedgerEvents:
    sequence: int
    per_tx: list[TxEvents] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    protocol: int = 0
    source: str = ""  # "operations" or "core"

    def ordered(self) -> list[Event]:
        """Emission order: every fee charged in apply order, then operation events; a Soroban
        refund follows its transaction's events before protocol 23 and comes after all
        transactions from protocol 23 on."""
        late = self.protocol >= 23
        fees = [e for tx in self.per_tx for e in tx.charged]
        body: list[Event] = []
        refunds: list[Event] = []
        for tx in self.per_tx:
            body.extend(tx.ops)
            (refunds if late else body).extend(tx.refunds)
        return fees + body + refunds


def is_fee(event: Event) -> bool:
    return event.kind == FEE
