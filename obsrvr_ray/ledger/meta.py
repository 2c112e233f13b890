"""Uniform access to TransactionMeta v0-v4: changes before/after, per-operation changes and events."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger.model import LedgerTransaction


def _body(meta: X.TransactionMeta):
    return {0: None, 1: meta.v1, 2: meta.v2, 3: meta.v3, 4: meta.v4}.get(meta.v)


def operation_metas(meta: X.TransactionMeta) -> list:
    if meta.v == 0:
        return meta.operations
    return _body(meta).operations


def operation_changes(meta: X.TransactionMeta, index: int) -> list[X.LedgerEntryChange]:
    ops = operation_metas(meta)
    if index >= len(ops):
        return []
    return ops[index].changes.ledger_entry_changes


def changes_before(meta: X.TransactionMeta) -> list[X.LedgerEntryChange]:
    if meta.v == 0:
        return []
    if meta.v == 1:
        return meta.v1.tx_changes.ledger_entry_changes
    return _body(meta).tx_changes_before.ledger_entry_changes


def changes_after(meta: X.TransactionMeta) -> list[X.LedgerEntryChange]:
    if meta.v in (0, 1):
        return []
    return _body(meta).tx_changes_after.ledger_entry_changes


def operation_events(meta: X.TransactionMeta, index: int) -> list[X.ContractEvent]:
    """Contract events of one operation: per operation in v4, the Soroban meta's in v3."""
    if meta.v == 4:
        ops = meta.v4.operations
        return ops[index].events if index < len(ops) else []
    if meta.v == 3 and meta.v3.soroban_meta is not None and index == 0:
        return meta.v3.soroban_meta.events
    return []


def transaction_events(meta: X.TransactionMeta) -> list[X.TransactionEvent]:
    return meta.v4.events if meta.v == 4 else []


def soroban_meta(meta: X.TransactionMeta):
    if meta.v == 3:
        return meta.v3.soroban_meta
    if meta.v == 4:
        return meta.v4.soroban_meta
    return None


def entry_of(change: X.LedgerEntryChange) -> X.LedgerEntry | None:
    """The entry a change carries (None for REMOVED, which carries only a key)."""
    kind = change.type
    if kind == X.LedgerEntryChangeType.LEDGER_ENTRY_CREATED:
        return change.created
    if kind == X.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED:
        return change.updated
    if kind == X.LedgerEntryChangeType.LEDGER_ENTRY_STATE:
        return change.state
    if kind == X.LedgerEntryChangeType.LEDGER_ENTRY_RESTORED:
        return change.restored
    return None


def paired_changes(changes: list[X.LedgerEntryChange]) -> list[tuple[X.LedgerEntry | None, X.LedgerEntry | None]]:
    """(pre, post) per entry that changed: STATE gives the pre of the next UPDATED or REMOVED,
    CREATED and RESTORED have no pre, REMOVED has no post; a lone STATE is no change."""
    out = []
    pending: X.LedgerEntry | None = None
    for change in changes:
        kind = change.type
        if kind == X.LedgerEntryChangeType.LEDGER_ENTRY_STATE:
            pending = change.state
        elif kind == X.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED:
            out.append((pending, change.updated))
            pending = None
        elif kind == X.LedgerEntryChangeType.LEDGER_ENTRY_REMOVED:
            out.append((pending, None))
            pending = None
        elif kind == X.LedgerEntryChangeType.LEDGER_ENTRY_CREATED:
            out.append((None, change.created))
            pending = None
        elif kind == X.LedgerEntryChangeType.LEDGER_ENTRY_RESTORED:
            out.append((None, change.restored))
            pending = None
    return out


def account_balances(changes: list[X.LedgerEntryChange], account: str) -> tuple[int, int]:
    """(balance in the account's last STATE, balance in its last UPDATED), 0 when absent: how
    fee charged and refunded are read from the fee payer's entry."""
    start = end = 0
    for change in changes:
        kind = change.type
        if kind == X.LedgerEntryChangeType.LEDGER_ENTRY_STATE:
            entry = change.state
        elif kind == X.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED:
            entry = change.updated
        else:
            continue
        if entry.data.type != X.LedgerEntryType.ACCOUNT:
            continue
        acct = entry.data.account
        if strkey.account(acct.account_id.account_id.ed25519.uint256) != account:
            continue
        if kind == X.LedgerEntryChangeType.LEDGER_ENTRY_STATE:
            start = acct.balance.int64
        else:
            end = acct.balance.int64
    return start, end


def refund_changes(tx: LedgerTransaction) -> list[X.LedgerEntryChange]:
    """Where a Soroban fee refund shows: the changes after the operations, then (from protocol 23)
    the post-apply fee processing."""
    after = list(changes_after(tx.meta))
    if tx.post_apply_fee_changes is not None:
        after += tx.post_apply_fee_changes.ledger_entry_changes
    return after
