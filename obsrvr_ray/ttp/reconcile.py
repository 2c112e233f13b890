"""Balance reconciliation: the value a transaction's events move must equal the balance changes
in its ledger-entry changes, per holder and asset.

Changes counted: fee processing, the transaction's changes before, each operation's, after,
and the post-apply fee processing; accounts (XLM), trustlines, claimable balances and pool
reserves. Contract-held balances (C addresses) and custom tokens are outside what entries show.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger import meta as M
from obsrvr_ray.ledger.model import LedgerTransaction
from obsrvr_ray.ttp.assets import from_xdr
from obsrvr_ray.ttp.events import BURN, CLAWBACK, FEE, MINT, TRANSFER, Event
from obsrvr_ray.ttp.issuer import account_of

Key = tuple[str, str]  # (holder strkey, canonical asset)


def _add(deltas: dict[Key, int], holder: str | None, asset: str, amount: int) -> None:
    if holder is None or holder.startswith("C"):
        return
    deltas[(account_of(holder), asset)] += amount


def event_deltas(events: list[Event]) -> dict[Key, int]:
    deltas: dict[Key, int] = defaultdict(int)
    for e in events:
        if e.asset is None:
            continue
        asset = e.asset.canonical
        if e.kind == TRANSFER:
            _add(deltas, e.from_, asset, -e.amount)
            _add(deltas, e.to, asset, e.amount)
        elif e.kind == MINT:
            _add(deltas, e.to, asset, e.amount)
        elif e.kind in (BURN, CLAWBACK, FEE):
            _add(deltas, e.from_, asset, -e.amount)
    return {k: v for k, v in deltas.items() if v}


def _entry_balances(entry: X.LedgerEntry | None) -> list[tuple[str, str, int]]:
    if entry is None:
        return []
    data = entry.data
    kind = data.type
    if kind == X.LedgerEntryType.ACCOUNT:
        acct = data.account
        return [(strkey.account(acct.account_id.account_id.ed25519.uint256), "native", acct.balance.int64)]
    if kind == X.LedgerEntryType.TRUSTLINE:
        line = data.trust_line
        asset = from_xdr(line.asset)
        if asset is None:  # pool shares are not a token
            return []
        return [(strkey.account(line.account_id.account_id.ed25519.uint256), asset.canonical, line.balance.int64)]
    if kind == X.LedgerEntryType.CLAIMABLE_BALANCE:
        cb = data.claimable_balance
        return [(strkey.claimable_balance(cb.balance_id.v0.hash), from_xdr(cb.asset).canonical, cb.amount.int64)]
    if kind == X.LedgerEntryType.LIQUIDITY_POOL:
        pool = data.liquidity_pool
        cp = pool.body.constant_product
        holder = strkey.liquidity_pool(pool.liquidity_pool_id.pool_id.hash)
        return [(holder, from_xdr(cp.params.asset_a).canonical, cp.reserve_a.int64),
                (holder, from_xdr(cp.params.asset_b).canonical, cp.reserve_b.int64)]
    return []


def change_deltas(changes: list[X.LedgerEntryChange]) -> dict[Key, int]:
    deltas: dict[Key, int] = defaultdict(int)
    for pre, post in M.paired_changes(changes):
        for holder, asset, amount in _entry_balances(post):
            deltas[(holder, asset)] += amount
        for holder, asset, amount in _entry_balances(pre):
            deltas[(holder, asset)] -= amount
    return {k: v for k, v in deltas.items() if v}


def transaction_changes(tx: LedgerTransaction, protocol: int) -> list[X.LedgerEntryChange]:
    meta = tx.meta
    out = list(tx.fee_changes.ledger_entry_changes)
    internal_error = tx.result.result.result.code == X.TransactionResultCode.txINTERNAL_ERROR
    out += M.changes_before(meta)
    if not (internal_error and protocol <= 12):
        for i in range(len(M.operation_metas(meta))):
            out += M.operation_changes(meta, i)
        out += M.changes_after(meta)
    if tx.post_apply_fee_changes is not None:
        out += tx.post_apply_fee_changes.ledger_entry_changes
    return out


@dataclass(frozen=True)
class Mismatch:
    """A transaction whose events and balance changes disagree: holder/asset -> (events, changes)."""

    ledger: int
    tx_hash: str
    differences: dict[Key, tuple[int, int]]

    def describe(self) -> str:
        parts = [f"{holder} {asset}: events {ev:+d}, changes {ch:+d}"
                 for (holder, asset), (ev, ch) in sorted(self.differences.items())]
        return f"ledger {self.ledger} tx {self.tx_hash}: " + "; ".join(parts)


def reconcile(ledger_seq: int, protocol: int, tx: LedgerTransaction, events: list[Event]) -> Mismatch | None:
    by_events = event_deltas(events)
    by_changes = change_deltas(transaction_changes(tx, protocol))
    keys = set(by_events) | set(by_changes)
    diff = {k: (by_events.get(k, 0), by_changes.get(k, 0)) for k in keys
            if by_events.get(k, 0) != by_changes.get(k, 0)}
    return Mismatch(ledger_seq, tx.hash.hex(), diff) if diff else None
