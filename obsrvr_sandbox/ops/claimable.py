"""Claimable balances: create, claim, and claw back (by the asset's issuer).

A new balance's id is the SHA-256 of the HashIDPreimage OPERATION_ID (transaction source,
sequence number, operation index), as core derives it; its creator sponsors it (one reserve per
claimant), and it can be clawed back when the asset could be clawed back from the creator: the
creator's trustline is clawback-enabled, or the creator is an issuer with clawback enabled.
Claiming or clawing back removes the entry and frees the sponsor's reserve.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from stellar_sdk import xdr as X

from obsrvr_sandbox.addresses import account_id_xdr, balance_id_xdr
from obsrvr_sandbox.entries import (
    AUTH_CLAWBACK_ENABLED_FLAG,
    AUTHORIZED_FLAG,
    TRUSTLINE_CLAWBACK_ENABLED_FLAG,
    ClaimableBalanceEntry,
)
from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.ops.balances import Refusal, available, credit, debit, min_balance
from obsrvr_sandbox.ops.base import (
    OpContext,
    OpOutcome,
    UnsupportedOperation,
    address,
    asset_from_xdr,
    inner_result,
)
from obsrvr_sandbox.state import EntryTxn

_CREATE = X.CreateClaimableBalanceResultCode
_CLAIM = X.ClaimClaimableBalanceResultCode
_CLAWBACK = X.ClawbackClaimableBalanceResultCode
_UNCONDITIONAL = X.ClaimPredicateType.CLAIM_PREDICATE_UNCONDITIONAL


def operation_balance_id(tx_source: str, tx_seq: int, op_index: int) -> bytes:
    preimage = X.HashIDPreimage(
        X.EnvelopeType.ENVELOPE_TYPE_OP_ID,
        operation_id=X.HashIDPreimageOperationID(
            account_id_xdr(tx_source), X.SequenceNumber(X.Int64(tx_seq)), X.Uint32(op_index)
        ),
    )
    return hashlib.sha256(preimage.to_xdr_bytes()).digest()


def _create_outcome(
    code: X.CreateClaimableBalanceResultCode, balance_id: bytes | None = None, moves: list[Move] | None = None
) -> OpOutcome:
    result = X.CreateClaimableBalanceResult(
        code, balance_id=balance_id_xdr(balance_id) if balance_id is not None else None
    )
    return OpOutcome(
        inner_result(X.OperationType.CREATE_CLAIMABLE_BALANCE, create_claimable_balance_result=result),
        code == _CREATE.CREATE_CLAIMABLE_BALANCE_SUCCESS,
        moves or [],
    )


def _clawback_enabled(txn: EntryTxn, holder: str, asset: object) -> bool:
    if asset.is_native():
        return False
    if holder == asset.issuer:
        return bool(txn.account(holder).flags & AUTH_CLAWBACK_ENABLED_FLAG)
    return bool(txn.trustline(holder, asset).flags & TRUSTLINE_CLAWBACK_ENABLED_FLAG)


def add_sponsoring(txn: EntryTxn, sponsor: str, count: int) -> None:
    account = txn.account(sponsor)
    txn.put(replace(account, num_sponsoring=account.num_sponsoring + count))


def create_claimable_balance(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.create_claimable_balance_op
    txn = ctx.txn
    asset = asset_from_xdr(op.asset)
    amount = op.amount.int64
    if amount <= 0 or not op.claimants:
        return _create_outcome(_CREATE.CREATE_CLAIMABLE_BALANCE_MALFORMED)
    if any(claimant.v0.predicate.type != _UNCONDITIONAL for claimant in op.claimants):
        raise UnsupportedOperation("the sandbox's claimable balances are claimable unconditionally")
    claimants = tuple(address(claimant.v0.destination) for claimant in op.claimants)
    account = txn.account(ctx.source)
    reserve = min_balance(account, ctx.ledger.base_reserve, extra_sponsoring=len(claimants))
    if account.balance - account.selling_liabilities < reserve:
        return _create_outcome(_CREATE.CREATE_CLAIMABLE_BALANCE_LOW_RESERVE)
    if not asset.is_native() and asset.issuer != ctx.source:
        line = txn.trustline(ctx.source, asset)
        if line is None:
            return _create_outcome(_CREATE.CREATE_CLAIMABLE_BALANCE_NO_TRUST)
        if not line.flags & AUTHORIZED_FLAG:
            return _create_outcome(_CREATE.CREATE_CLAIMABLE_BALANCE_NOT_AUTHORIZED)
    add_sponsoring(txn, ctx.source, len(claimants))
    if (available(txn, ctx.source, asset, ctx.ledger.base_reserve) or 0) < amount:
        return _create_outcome(_CREATE.CREATE_CLAIMABLE_BALANCE_UNDERFUNDED)
    debit(txn, ctx.source, asset, amount, ctx.ledger.base_reserve)
    balance_id = operation_balance_id(ctx.tx_source, ctx.tx_seq, ctx.op_index)
    entry = ClaimableBalanceEntry(
        balance_id, claimants, asset, amount, sponsor=ctx.source, clawback=_clawback_enabled(txn, ctx.source, asset)
    )
    txn.put(entry)
    return _create_outcome(
        _CREATE.CREATE_CLAIMABLE_BALANCE_SUCCESS, balance_id, [Move(asset, ctx.source, entry.address, amount, False)]
    )


def _release(txn: EntryTxn, entry: ClaimableBalanceEntry) -> None:
    txn.remove(entry.key)
    add_sponsoring(txn, entry.sponsor, -len(entry.claimants))


def claim_claimable_balance(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    balance_id = body.claim_claimable_balance_op.balance_id.v0.hash

    def outcome(code: X.ClaimClaimableBalanceResultCode, moves: list[Move] | None = None) -> OpOutcome:
        result = X.ClaimClaimableBalanceResult(code)
        return OpOutcome(
            inner_result(X.OperationType.CLAIM_CLAIMABLE_BALANCE, claim_claimable_balance_result=result),
            code == _CLAIM.CLAIM_CLAIMABLE_BALANCE_SUCCESS,
            moves or [],
        )

    entry = ctx.txn.claimable_balance(balance_id)
    if entry is None:
        return outcome(_CLAIM.CLAIM_CLAIMABLE_BALANCE_DOES_NOT_EXIST)
    if ctx.source not in entry.claimants:
        return outcome(_CLAIM.CLAIM_CLAIMABLE_BALANCE_CANNOT_CLAIM)
    refusal = credit(ctx.txn, ctx.source, entry.asset, entry.amount)
    if refusal is not None:
        return outcome(
            {
                Refusal.NO_TRUST: _CLAIM.CLAIM_CLAIMABLE_BALANCE_NO_TRUST,
                Refusal.NOT_AUTHORIZED: _CLAIM.CLAIM_CLAIMABLE_BALANCE_NOT_AUTHORIZED,
            }.get(refusal, _CLAIM.CLAIM_CLAIMABLE_BALANCE_LINE_FULL)
        )
    _release(ctx.txn, entry)
    return outcome(_CLAIM.CLAIM_CLAIMABLE_BALANCE_SUCCESS, [Move(entry.asset, entry.address, ctx.source, entry.amount)])


def clawback_claimable_balance(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    balance_id = body.clawback_claimable_balance_op.balance_id.v0.hash

    def outcome(code: X.ClawbackClaimableBalanceResultCode, moves: list[Move] | None = None) -> OpOutcome:
        result = X.ClawbackClaimableBalanceResult(code)
        return OpOutcome(
            inner_result(X.OperationType.CLAWBACK_CLAIMABLE_BALANCE, clawback_claimable_balance_result=result),
            code == _CLAWBACK.CLAWBACK_CLAIMABLE_BALANCE_SUCCESS,
            moves or [],
        )

    entry = ctx.txn.claimable_balance(balance_id)
    if entry is None:
        return outcome(_CLAWBACK.CLAWBACK_CLAIMABLE_BALANCE_DOES_NOT_EXIST)
    if entry.asset.is_native() or entry.asset.issuer != ctx.source:
        return outcome(_CLAWBACK.CLAWBACK_CLAIMABLE_BALANCE_NOT_ISSUER)
    if not entry.clawback:
        return outcome(_CLAWBACK.CLAWBACK_CLAIMABLE_BALANCE_NOT_CLAWBACK_ENABLED)
    _release(ctx.txn, entry)
    move = Move(entry.asset, entry.address, ctx.source, entry.amount, clawback=True)
    return outcome(_CLAWBACK.CLAWBACK_CLAIMABLE_BALANCE_SUCCESS, [move])
