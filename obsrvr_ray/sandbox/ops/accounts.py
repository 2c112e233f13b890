"""Create account: a new account funded with native XLM from the source."""

from __future__ import annotations

from stellar_sdk import Asset
from stellar_sdk import xdr as X

from obsrvr_ray.sandbox.ops.balances import debit
from obsrvr_ray.sandbox.ops.base import Move, OpContext, OpOutcome, address, inner_result
from obsrvr_ray.sandbox.state import AccountEntry

_NATIVE = Asset.native()
_CODES = X.CreateAccountResultCode


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
