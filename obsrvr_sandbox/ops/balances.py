"""Debiting and crediting accounts and trustlines, with the reserve, limit and liability rules
every value-moving operation shares.

An asset's issuer has no trustline for it: the issuer sending creates the asset and receiving it
destroys it, so neither side touches an entry. Offers reserve what they may sell (selling
liabilities) and receive (buying liabilities), so a resting offer can always be filled: what a
holder can send is its balance less its selling liabilities (and, for XLM, less the reserve),
and what it can receive stops short of its limit less its buying liabilities.
"""

from __future__ import annotations

import enum
from dataclasses import replace

from stellar_sdk import Asset

from obsrvr_sandbox.entries import AUTHORIZED_FLAG, INT64_MAX, AccountEntry
from obsrvr_sandbox.state import EntryTxn


class Refusal(enum.Enum):
    NO_ACCOUNT = "no account"
    NO_TRUST = "no trustline"
    NOT_AUTHORIZED = "not authorized"
    UNDERFUNDED = "underfunded"
    LINE_FULL = "line full"


def min_balance(account: AccountEntry, base_reserve: int, extra_sub_entries: int = 0, extra_sponsoring: int = 0) -> int:
    """Two base reserves for the account, one per sub-entry and one per entry it sponsors."""
    entries = 2 + account.num_sub_entries + extra_sub_entries + account.num_sponsoring + extra_sponsoring
    return entries * base_reserve


def spendable_xlm(account: AccountEntry, base_reserve: int) -> int:
    return max(0, account.balance - min_balance(account, base_reserve) - account.selling_liabilities)


def available(txn: EntryTxn, account_id: str, asset: Asset, base_reserve: int) -> int | None:
    """What the holder can send of `asset` (None without an account or trustline); an issuer
    can send any amount of its own asset."""
    if asset.is_native():
        account = txn.account(account_id)
        return None if account is None else spendable_xlm(account, base_reserve)
    if account_id == asset.issuer:
        return INT64_MAX
    line = txn.trustline(account_id, asset)
    return None if line is None else line.balance - line.selling_liabilities


def debit(
    txn: EntryTxn, account_id: str, asset: Asset, amount: int, base_reserve: int, *, authorized_only: bool = True
) -> Refusal | None:
    """Take `amount`; a clawback passes `authorized_only=False` (it works on frozen lines)."""
    if asset.is_native():
        account = txn.account(account_id)
        if account is None:
            return Refusal.NO_ACCOUNT
        if amount > spendable_xlm(account, base_reserve):
            return Refusal.UNDERFUNDED
        txn.put(replace(account, balance=account.balance - amount))
        return None
    if account_id == asset.issuer:
        return None
    line = txn.trustline(account_id, asset)
    if line is None:
        return Refusal.NO_TRUST
    if authorized_only and not line.flags & AUTHORIZED_FLAG:
        return Refusal.NOT_AUTHORIZED
    if amount > line.balance - line.selling_liabilities:
        return Refusal.UNDERFUNDED
    txn.put(replace(line, balance=line.balance - amount))
    return None


def credit(txn: EntryTxn, account_id: str, asset: Asset, amount: int) -> Refusal | None:
    if asset.is_native():
        account = txn.account(account_id)
        if account is None:
            return Refusal.NO_ACCOUNT
        if account.balance > INT64_MAX - account.buying_liabilities - amount:
            return Refusal.LINE_FULL
        txn.put(replace(account, balance=account.balance + amount))
        return None
    if account_id == asset.issuer:
        return None
    line = txn.trustline(account_id, asset)
    if line is None:
        return Refusal.NO_TRUST
    if not line.flags & AUTHORIZED_FLAG:
        return Refusal.NOT_AUTHORIZED
    if line.balance > line.limit - line.buying_liabilities - amount:
        return Refusal.LINE_FULL
    txn.put(replace(line, balance=line.balance + amount))
    return None


def adjust_liabilities(txn: EntryTxn, account_id: str, asset: Asset, *, buying: int = 0, selling: int = 0) -> None:
    """Add (or, negative, release) what offers reserve on the holder's entry for `asset`."""
    if asset.is_native():
        account = txn.account(account_id)
        txn.put(
            replace(
                account,
                buying_liabilities=account.buying_liabilities + buying,
                selling_liabilities=account.selling_liabilities + selling,
            )
        )
    elif account_id != asset.issuer:
        line = txn.trustline(account_id, asset)
        txn.put(
            replace(
                line,
                buying_liabilities=line.buying_liabilities + buying,
                selling_liabilities=line.selling_liabilities + selling,
            )
        )
