"""Liquidity-pool deposit and withdraw.

The first deposit sets the pool's price and mints floor(sqrt(a × b)) shares; later deposits
keep the price, taking the most of each maximum the reserves' ratio allows (rounded up, in the
pool's favour) for the shares they are worth (rounded down). A withdrawal pays out each reserve
in proportion to the shares returned, rounded down.
"""

from __future__ import annotations

import math
from dataclasses import replace

from stellar_sdk import xdr as X

from obsrvr_sandbox.entries import AUTHORIZED_FLAG, INT64_MAX
from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.ops.balances import available, credit, debit
from obsrvr_sandbox.ops.base import OpContext, OpOutcome, inner_result

_DEPOSIT = X.LiquidityPoolDepositResultCode
_WITHDRAW = X.LiquidityPoolWithdrawResultCode


def _deposit_outcome(code: X.LiquidityPoolDepositResultCode, moves: list[Move] | None = None) -> OpOutcome:
    result = X.LiquidityPoolDepositResult(code)
    return OpOutcome(
        inner_result(X.OperationType.LIQUIDITY_POOL_DEPOSIT, liquidity_pool_deposit_result=result),
        code == _DEPOSIT.LIQUIDITY_POOL_DEPOSIT_SUCCESS,
        moves or [],
    )


def _within(amount_a: int, amount_b: int, low: X.Price, high: X.Price) -> bool:
    """low <= a/b <= high."""
    return amount_a * low.d.int32 >= low.n.int32 * amount_b and amount_a * high.d.int32 <= high.n.int32 * amount_b


def _deposit_amounts(reserve_a: int, reserve_b: int, shares: int, max_a: int, max_b: int) -> tuple[int, int, int]:
    """(amount a, amount b, new shares)."""
    if shares == 0:
        return max_a, max_b, math.isqrt(max_a * max_b)
    minted = min(max_a * shares // reserve_a, max_b * shares // reserve_b)
    return -(-minted * reserve_a // shares), -(-minted * reserve_b // shares), minted


def liquidity_pool_deposit(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.liquidity_pool_deposit_op
    txn = ctx.txn
    pool_id = op.liquidity_pool_id.pool_id.hash
    max_a, max_b = op.max_amount_a.int64, op.max_amount_b.int64
    if max_a <= 0 or max_b <= 0:
        return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_MALFORMED)
    share = txn.pool_share(ctx.source, pool_id)
    if share is None:
        return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_NO_TRUST)
    pool = txn.pool(pool_id)
    for asset in (pool.asset_a, pool.asset_b):
        line = None if asset.is_native() or asset.issuer == ctx.source else txn.trustline(ctx.source, asset)
        if line is not None and not line.flags & AUTHORIZED_FLAG:
            return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_NOT_AUTHORIZED)
    amount_a, amount_b, minted = _deposit_amounts(pool.reserve_a, pool.reserve_b, pool.total_shares, max_a, max_b)
    if minted <= 0 or amount_a <= 0 or amount_b <= 0:
        return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_BAD_PRICE)
    if not _within(amount_a, amount_b, op.min_price, op.max_price):
        return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_BAD_PRICE)
    base_reserve = ctx.ledger.base_reserve
    if (available(txn, ctx.source, pool.asset_a, base_reserve) or 0) < amount_a or (
        available(txn, ctx.source, pool.asset_b, base_reserve) or 0
    ) < amount_b:
        return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_UNDERFUNDED)
    if share.balance > share.limit - minted:
        return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_LINE_FULL)
    if pool.reserve_a > INT64_MAX - amount_a or pool.reserve_b > INT64_MAX - amount_b:
        return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_POOL_FULL)
    debit(txn, ctx.source, pool.asset_a, amount_a, base_reserve)
    debit(txn, ctx.source, pool.asset_b, amount_b, base_reserve)
    txn.put(replace(share, balance=share.balance + minted))
    txn.put(
        replace(
            pool,
            reserve_a=pool.reserve_a + amount_a,
            reserve_b=pool.reserve_b + amount_b,
            total_shares=pool.total_shares + minted,
        )
    )
    moves = [
        Move(pool.asset_a, ctx.source, pool.address, amount_a, False),
        Move(pool.asset_b, ctx.source, pool.address, amount_b, False),
    ]
    return _deposit_outcome(_DEPOSIT.LIQUIDITY_POOL_DEPOSIT_SUCCESS, moves)


def _withdraw_outcome(code: X.LiquidityPoolWithdrawResultCode, moves: list[Move] | None = None) -> OpOutcome:
    result = X.LiquidityPoolWithdrawResult(code)
    return OpOutcome(
        inner_result(X.OperationType.LIQUIDITY_POOL_WITHDRAW, liquidity_pool_withdraw_result=result),
        code == _WITHDRAW.LIQUIDITY_POOL_WITHDRAW_SUCCESS,
        moves or [],
    )


def liquidity_pool_withdraw(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.liquidity_pool_withdraw_op
    txn = ctx.txn
    pool_id = op.liquidity_pool_id.pool_id.hash
    shares = op.amount.int64
    if shares <= 0:
        return _withdraw_outcome(_WITHDRAW.LIQUIDITY_POOL_WITHDRAW_MALFORMED)
    share = txn.pool_share(ctx.source, pool_id)
    if share is None:
        return _withdraw_outcome(_WITHDRAW.LIQUIDITY_POOL_WITHDRAW_NO_TRUST)
    if share.balance < shares:
        return _withdraw_outcome(_WITHDRAW.LIQUIDITY_POOL_WITHDRAW_UNDERFUNDED)
    pool = txn.pool(pool_id)
    amount_a = shares * pool.reserve_a // pool.total_shares
    amount_b = shares * pool.reserve_b // pool.total_shares
    if amount_a < op.min_amount_a.int64 or amount_b < op.min_amount_b.int64:
        return _withdraw_outcome(_WITHDRAW.LIQUIDITY_POOL_WITHDRAW_UNDER_MINIMUM)
    if credit(txn, ctx.source, pool.asset_a, amount_a) or credit(txn, ctx.source, pool.asset_b, amount_b):
        return _withdraw_outcome(_WITHDRAW.LIQUIDITY_POOL_WITHDRAW_LINE_FULL)
    txn.put(replace(share, balance=share.balance - shares))
    txn.put(
        replace(
            pool,
            reserve_a=pool.reserve_a - amount_a,
            reserve_b=pool.reserve_b - amount_b,
            total_shares=pool.total_shares - shares,
        )
    )
    moves = [
        Move(pool.asset_a, pool.address, ctx.source, amount_a),
        Move(pool.asset_b, pool.address, ctx.source, amount_b),
    ]
    return _withdraw_outcome(_WITHDRAW.LIQUIDITY_POOL_WITHDRAW_SUCCESS, moves)
