"""The three-way check of one ledger: events derived from operations, events core emitted, and
balance changes in the ledger entries must agree. Every disagreement is a finding naming the
transaction; nothing is dropped.

One difference between the two event views is a rule, not a disagreement: for each claim atom
of a trade, stellar/go's derivation emits seller->taker then taker->seller, core emits the
reverse. The check derives the events with core's pair order (obsrvr_ray.ttp.offers) and then
compares both views in order, so any other difference of order is a finding too.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.ttp.core_events import core_ledger_events, has_unified_events
from obsrvr_ray.ttp.derive import derived_ledger_events
from obsrvr_ray.ttp.events import Event, TxEvents
from obsrvr_ray.ttp.reconcile import reconcile


@dataclass(frozen=True)
class Finding:
    ledger: int
    tx_hash: str | None
    check: str  # derived-vs-core, balances(derived), balances(core), rule
    detail: str

    def describe(self) -> str:
        tx = f" tx {self.tx_hash}" if self.tx_hash else ""
        return f"ledger {self.ledger}{tx} [{self.check}]: {self.detail}"


def compare_views(derived: TxEvents, core: TxEvents) -> str | None:
    """None when the views agree event for event and in order (derived with core's claim-atom
    order), else the first place they differ."""
    if derived.fees != core.fees:
        return f"fee events differ: derived {[e.amount for e in derived.fees]}, core {[e.amount for e in core.fees]}"
    for at, (d, c) in enumerate(zip_longest(derived.ops, core.ops)):
        if d != c:
            return (f"operation {(d or c).op_index}, event {at + 1} of {len(derived.ops)} derived / "
                    f"{len(core.ops)} core: derived {_short(d) if d else 'nothing'}, "
                    f"core {_short(c) if c else 'nothing'}")
    return None


def _short(e: Event) -> str:
    asset = e.asset.canonical if e.asset else e.contract_id
    return f"{e.kind} {e.from_}->{e.to} {e.amount} {asset}"


@dataclass
class Verification:
    ledger: int
    transactions: int
    with_core_events: bool
    findings: list[Finding]


def verify_ledger(ledger: Ledger, passphrase: str) -> Verification:
    seq, protocol = ledger.sequence, ledger.protocol_version
    derived = derived_ledger_events(ledger, passphrase, core_claim_order=True)
    findings = [Finding(seq, s.tx_hash, "rule", f"op {s.op_index}: {s.reason}") for s in derived.skipped if s.error]
    core = core_ledger_events(ledger, passphrase) if has_unified_events(ledger) else None
    if core is not None:
        findings += [Finding(seq, s.tx_hash, "rule", f"core events, op {s.op_index}: {s.reason}")
                     for s in core.skipped if s.error]
    for i, tx in enumerate(ledger.transactions):
        mismatch = reconcile(seq, protocol, tx, derived.per_tx[i].all())
        if mismatch is not None:
            findings.append(Finding(seq, mismatch.tx_hash, "balances(derived)", mismatch.describe()))
        if core is None:
            continue
        mismatch = reconcile(seq, protocol, tx, core.per_tx[i].all())
        if mismatch is not None:
            findings.append(Finding(seq, mismatch.tx_hash, "balances(core)", mismatch.describe()))
        differs = compare_views(derived.per_tx[i], core.per_tx[i])
        if differs is not None:
            findings.append(Finding(seq, tx.hash.hex(), "derived-vs-core", differs))
    return Verification(seq, len(ledger.transactions), core is not None, findings)
