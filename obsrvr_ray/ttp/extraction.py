"""What reading a ledger's token transfers yields: the events in emission order, and every
event or operation that could not be read, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field

from obsrvr_ray.ttp.events import FEE, Event


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
