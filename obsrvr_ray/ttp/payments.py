"""Payments in all their forms: create account, payment, path payments, account merge, inflation."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray.ledger.accounts import account_id, muxed_address
from obsrvr_ray.ttp.assets import NATIVE, from_xdr
from obsrvr_ray.ttp.classic import movement
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import MINT, Event
from obsrvr_ray.ttp.offers import claim_atom_events, success_of


def create_account(ctx: TxContext, op: X.Operation, op_index: int, _result: X.OperationResultTr) -> list[Event]:
    body = op.body.create_account_op
    return [movement(ctx, NATIVE, ctx.op_source(op), account_id(body.destination), body.starting_balance.int64,
                     op_index, with_muxed=True)]


def payment(ctx: TxContext, op: X.Operation, op_index: int, _result: X.OperationResultTr) -> list[Event]:
    body = op.body.payment_op
    return [movement(ctx, from_xdr(body.asset), ctx.op_source(op), muxed_address(body.destination),
                     body.amount.int64, op_index, with_muxed=True)]


def path_payment(ctx: TxContext, op: X.Operation, op_index: int, result: X.OperationResultTr) -> list[Event]:
    """Every crossed offer or pool, then the delivery: strict send delivers the result's last
    amount, strict receive the amount the operation asked for."""
    if op.body.type == X.OperationType.PATH_PAYMENT_STRICT_SEND:
        body = op.body.path_payment_strict_send_op
        success = success_of(result.path_payment_strict_send_result)
        delivered = success.last.amount.int64
    else:
        body = op.body.path_payment_strict_receive_op
        success = success_of(result.path_payment_strict_receive_result)
        delivered = body.dest_amount.int64
    source = ctx.op_source(op)
    events = claim_atom_events(ctx, success.offers, ctx.op_source_account(op), op_index)
    events.append(movement(ctx, from_xdr(body.dest_asset), source, muxed_address(body.destination), delivered,
                           op_index, with_muxed=True))
    return events


def account_merge(ctx: TxContext, op: X.Operation, op_index: int, result: X.OperationResultTr) -> list[Event]:
    """The merged balance moves to the destination; old results do not record it, and then
    nothing can be said."""
    balance = result.account_merge_result.source_account_balance
    if balance is None:
        return []
    return [movement(ctx, NATIVE, ctx.op_source(op), muxed_address(op.body.destination), balance.int64, op_index,
                     with_muxed=True)]


def inflation(ctx: TxContext, _op: X.Operation, op_index: int, result: X.OperationResultTr) -> list[Event]:
    sac = ctx.sac(NATIVE)
    return [
        Event(MINT, amount=p.amount.int64, asset=NATIVE, contract_id=sac, to=account_id(p.destination),
              **ctx.common(op_index))
        for p in result.inflation_result.payouts or []
    ]
