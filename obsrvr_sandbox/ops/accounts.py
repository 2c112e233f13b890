"""Accounts: create (funded with XLM from the source), merge (the whole balance moves to the
destination and the source account is removed) and set options (account flags only: an issuer
makes its asset revocable and clawback-enabled)."""

from __future__ import annotations

from dataclasses import replace

from stellar_sdk import Asset
from stellar_sdk import xdr as X

from obsrvr_sandbox.entries import AUTH_CLAWBACK_ENABLED_FLAG, AUTH_REVOCABLE_FLAG, INT64_MAX, AccountEntry
from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.ops.balances import debit
from obsrvr_sandbox.ops.base import (
    OpContext,
    OpOutcome,
    UnsupportedOperation,
    address,
    inner_result,
    muxed_address,
)

_NATIVE = Asset.native()
_CODES = X.CreateAccountResultCode
_MERGE = X.AccountMergeResultCode


def _outcome(code: X.CreateAccountResultCode, moves: list[Move] | None = None) -> OpOutcome:
    result = inner_result(X.OperationType.CREATE_ACCOUNT, create_account_result=X.CreateAccountResult(code))
    return OpOutcome(result, code == _CODES.CREATE_ACCOUNT_SUCCESS, moves or [])


def create_account(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.create_account_op
    destination = address(op.destination)
    amount = op.starting_balance.int64
    if ctx.txn.account(destination) is not None:
        return _outcome(_CODES.CREATE_ACCOUNT_ALREADY_EXIST)
    if amount < 2 * ctx.ledger.base_reserve:
        return _outcome(_CODES.CREATE_ACCOUNT_LOW_RESERVE)
    if debit(ctx.txn, ctx.source, _NATIVE, amount, ctx.ledger.base_reserve) is not None:
        return _outcome(_CODES.CREATE_ACCOUNT_UNDERFUNDED)
    # A new account's sequence number starts at the creating ledger's sequence << 32.
    ctx.txn.put(AccountEntry(destination, balance=amount, seq_num=ctx.ledger.sequence << 32))
    return _outcome(_CODES.CREATE_ACCOUNT_SUCCESS, [Move(_NATIVE, ctx.source, destination, amount)])


def account_merge(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    """The result records the merged balance, which is what moved."""
    destination, muxed_id = muxed_address(body.destination)

    def outcome(
        code: X.AccountMergeResultCode, balance: int | None = None, moves: list[Move] | None = None
    ) -> OpOutcome:
        merged = X.Int64(balance) if balance is not None else None
        result = inner_result(X.OperationType.ACCOUNT_MERGE, account_merge_result=X.AccountMergeResult(code, merged))
        return OpOutcome(result, code == _MERGE.ACCOUNT_MERGE_SUCCESS, moves or [])

    txn = ctx.txn
    source = txn.account(ctx.source)
    target = txn.account(destination)
    if destination == ctx.source:
        return outcome(_MERGE.ACCOUNT_MERGE_MALFORMED)
    if target is None:
        return outcome(_MERGE.ACCOUNT_MERGE_NO_ACCOUNT)
    if source.num_sub_entries:
        return outcome(_MERGE.ACCOUNT_MERGE_HAS_SUB_ENTRIES)
    if source.num_sponsoring:
        return outcome(_MERGE.ACCOUNT_MERGE_IS_SPONSOR)
    if source.seq_num >= ctx.ledger.sequence << 32:
        return outcome(_MERGE.ACCOUNT_MERGE_SEQNUM_TOO_FAR)
    if target.balance > INT64_MAX - target.buying_liabilities - source.balance:
        return outcome(_MERGE.ACCOUNT_MERGE_DEST_FULL)
    txn.put(replace(target, balance=target.balance + source.balance))
    txn.remove(source.key)
    move = Move(_NATIVE, ctx.source, destination, source.balance, True, muxed_id)
    return outcome(_MERGE.ACCOUNT_MERGE_SUCCESS, source.balance, [move])


def set_options(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.set_options_op
    if any(
        value is not None
        for value in (
            op.inflation_dest,
            op.master_weight,
            op.low_threshold,
            op.med_threshold,
            op.high_threshold,
            op.home_domain,
            op.signer,
        )
    ):
        raise UnsupportedOperation("the sandbox's set options only sets and clears account flags")
    account = ctx.txn.account(ctx.source)
    flags = account.flags
    if op.set_flags is not None:
        flags |= op.set_flags.uint32
    if op.clear_flags is not None:
        flags &= ~op.clear_flags.uint32
    code = X.SetOptionsResultCode.SET_OPTIONS_SUCCESS
    if flags & AUTH_CLAWBACK_ENABLED_FLAG and not flags & AUTH_REVOCABLE_FLAG:
        code = X.SetOptionsResultCode.SET_OPTIONS_AUTH_REVOCABLE_REQUIRED
    else:
        ctx.txn.put(replace(account, flags=flags))
    result = inner_result(X.OperationType.SET_OPTIONS, set_options_result=X.SetOptionsResult(code))
    return OpOutcome(result, code == X.SetOptionsResultCode.SET_OPTIONS_SUCCESS)
