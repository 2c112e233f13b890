"""Liquidity-pool deposits and withdrawals: the amounts are the pool's reserve changes."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray.ttp.classic import movement
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import Event, TransferError
from obsrvr_ray.ttp.ledger_entries import single_pool_delta


def deposit(ctx: TxContext, op: X.Operation, op_index: int, _result: X.OperationResultTr) -> list[Event]:
    pool = single_pool_delta(ctx.op_changes(op_index - 1))
    amount_a, amount_b = abs(pool.delta_a), abs(pool.delta_b)
    if amount_a <= 0 or amount_b <= 0:
        raise TransferError(f"deposit into {pool.address} did not raise both reserves")
    source = ctx.op_source(op)
    return [
        movement(ctx, pool.asset_a, source, pool.address, amount_a, op_index, with_muxed=False),
        movement(ctx, pool.asset_b, source, pool.address, amount_b, op_index, with_muxed=False),
    ]


def withdraw(ctx: TxContext, op: X.Operation, op_index: int, _result: X.OperationResultTr) -> list[Event]:
    pool = single_pool_delta(ctx.op_changes(op_index - 1))
    amount_a, amount_b = -pool.delta_a, -pool.delta_b
    if amount_a < 0 or amount_b < 0:
        raise TransferError(f"withdrawal from {pool.address} raised a reserve")
    source = ctx.op_source(op)
    return [
        movement(ctx, pool.asset_a, pool.address, source, amount_a, op_index, with_muxed=True),
        movement(ctx, pool.asset_b, pool.address, source, amount_b, op_index, with_muxed=True),
    ]
