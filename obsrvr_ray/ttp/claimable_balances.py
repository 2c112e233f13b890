"""Claimable balances: created from the source, claimed by the claimant, clawed back by the issuer.
Claims and clawbacks move the amount of the entry they removed."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray.ttp.assets import from_xdr
from obsrvr_ray.ttp.classic import movement
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import CLAWBACK, Event, TransferError
from obsrvr_ray.ttp.ledger_entries import balance_id_strkey, removed_claimable_balance


def create(ctx: TxContext, op: X.Operation, op_index: int, result: X.OperationResultTr) -> list[Event]:
    body = op.body.create_claimable_balance_op
    created = result.create_claimable_balance_result
    if created.balance_id is None:  # only a success names the balance, and the transaction succeeded
        raise TransferError(f"result {created.code.name} in a successful transaction")
    balance = balance_id_strkey(created.balance_id)
    return [movement(ctx, from_xdr(body.asset), ctx.op_source(op), balance, body.amount.int64, op_index,
                     with_muxed=False)]


def claim(ctx: TxContext, op: X.Operation, op_index: int, _result: X.OperationResultTr) -> list[Event]:
    entry = removed_claimable_balance(ctx.op_changes(op_index - 1))
    balance = balance_id_strkey(op.body.claim_claimable_balance_op.balance_id)
    return [movement(ctx, from_xdr(entry.asset), balance, ctx.op_source(op), entry.amount.int64, op_index,
                     with_muxed=True)]


def clawback(ctx: TxContext, op: X.Operation, op_index: int, _result: X.OperationResultTr) -> list[Event]:
    entry = removed_claimable_balance(ctx.op_changes(op_index - 1))
    asset = from_xdr(entry.asset)
    return [Event(CLAWBACK, amount=entry.amount.int64, asset=asset, contract_id=ctx.sac(asset),
                  from_=balance_id_strkey(op.body.clawback_claimable_balance_op.balance_id), **ctx.common(op_index))]
