"""Trades against offers and pools: each claim atom moves the sold asset from the seller (an
account, or a liquidity pool) to the taker and the bought asset back.

Order of the pair: stellar/go's processor emits seller->taker then taker->seller; core's unified
events (TransactionMetaV4) emit taker->seller first. The derived view follows stellar/go unless
the context asks for core's order (the three-way check compares the views in order)."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger.accounts import account_id
from obsrvr_ray.ttp.assets import from_xdr
from obsrvr_ray.ttp.classic import movement
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import Event, TransferError


def success_of(result: object) -> object:
    """The success arm of an operation's result: the only arm in a successful transaction, so
    another one is data that breaks the rule, not a bug to raise."""
    if result.success is None:
        raise TransferError(f"result {result.code.name} in a successful transaction")
    return result.success


def claim_atom_events(ctx: TxContext, atoms: list[X.ClaimAtom], taker: str, op_index: int) -> list[Event]:
    events = []
    for atom in atoms:
        kind = atom.type
        if kind == X.ClaimAtomType.CLAIM_ATOM_TYPE_V0:
            a = atom.v0
            seller = strkey.account(a.seller_ed25519.uint256)
        elif kind == X.ClaimAtomType.CLAIM_ATOM_TYPE_ORDER_BOOK:
            a = atom.order_book
            seller = account_id(a.seller_id)
        else:
            a = atom.liquidity_pool
            seller = strkey.liquidity_pool(a.liquidity_pool_id.pool_id.hash)
        sold = movement(ctx, from_xdr(a.asset_sold), seller, taker, a.amount_sold.int64, op_index, with_muxed=False)
        bought = movement(ctx, from_xdr(a.asset_bought), taker, seller, a.amount_bought.int64, op_index,
                          with_muxed=False)
        events.extend((bought, sold) if ctx.core_claim_order else (sold, bought))
    return events


def manage_offer(ctx: TxContext, op: X.Operation, op_index: int, result: X.OperationResultTr) -> list[Event]:
    kind = op.body.type
    if kind == X.OperationType.MANAGE_SELL_OFFER:
        res = result.manage_sell_offer_result
    elif kind == X.OperationType.MANAGE_BUY_OFFER:
        res = result.manage_buy_offer_result
    else:
        res = result.create_passive_sell_offer_result
    return claim_atom_events(ctx, success_of(res).offers_claimed, ctx.op_source_account(op), op_index)
