"""Change trust: open, re-limit or close a trustline to an issued asset.

A trustline is a sub-entry of its account: it raises the account's minimum balance by one
base reserve, so opening one needs that much spare XLM and closing one frees it."""

from __future__ import annotations

from dataclasses import replace

from stellar_sdk import xdr as X

from obsrvr_ray.sandbox.ops.balances import min_balance
from obsrvr_ray.sandbox.ops.base import OpContext, OpOutcome, asset_from_xdr, inner_result
from obsrvr_ray.sandbox.state import TrustlineEntry

_CODES = X.ChangeTrustResultCode


def _outcome(code: X.ChangeTrustResultCode) -> OpOutcome:
    result = inner_result(X.OperationType.CHANGE_TRUST, change_trust_result=X.ChangeTrustResult(code))
    return OpOutcome(result, code == _CODES.CHANGE_TRUST_SUCCESS)


def change_trust(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.change_trust_op
    asset = asset_from_xdr(op.line)
    limit = op.limit.int64
    txn = ctx.txn
    if asset.is_native():
        return _outcome(_CODES.CHANGE_TRUST_MALFORMED)
    if asset.issuer == ctx.source:
        return _outcome(_CODES.CHANGE_TRUST_SELF_NOT_ALLOWED)
    account = txn.account(ctx.source)
    line = txn.trustline(ctx.source, asset)
    if line is not None:
        if limit < line.balance:
            return _outcome(_CODES.CHANGE_TRUST_INVALID_LIMIT)
        if limit == 0:
            txn.remove(line.key)
            txn.put(replace(account, num_sub_entries=account.num_sub_entries - 1))
        else:
            txn.put(replace(line, limit=limit))
        return _outcome(_CODES.CHANGE_TRUST_SUCCESS)
    if limit == 0:
        return _outcome(_CODES.CHANGE_TRUST_INVALID_LIMIT)
    if txn.account(asset.issuer) is None:
        return _outcome(_CODES.CHANGE_TRUST_NO_ISSUER)
    if account.balance < min_balance(account, ctx.ledger.base_reserve, extra_sub_entries=1):
        return _outcome(_CODES.CHANGE_TRUST_LOW_RESERVE)
    txn.put(TrustlineEntry(ctx.source, asset, balance=0, limit=limit))
    txn.put(replace(account, num_sub_entries=account.num_sub_entries + 1))
    return _outcome(_CODES.CHANGE_TRUST_SUCCESS)
