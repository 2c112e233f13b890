"""Manage sell offer, manage buy offer and create passive sell offer.

An offer first crosses the resting offers it can (the order book only; pools trade with path
payments), each trade a claim atom. What is left rests on the book as a new offer (a sub-entry
of its seller, with liabilities reserved) or updates the offer being managed; a managed offer
that is fully taken, or given an amount of 0, is deleted. A buy offer rests as the equivalent
sell offer: selling what it pays with, at the inverse price.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stellar_sdk import Asset
from stellar_sdk import xdr as X

from obsrvr_sandbox.entries import AUTHORIZED_FLAG, OfferEntry
from obsrvr_sandbox.entry_xdr import offer_xdr
from obsrvr_sandbox.ops.balances import available, credit, debit, min_balance
from obsrvr_sandbox.ops.base import OpContext, OpOutcome, asset_from_xdr, inner_result
from obsrvr_sandbox.ops.exchange import Conversion, Shortfall, cost, cross_book, reserve_offer

_EFFECT = X.ManageOfferEffect
_OT = X.OperationType


@dataclass(frozen=True, slots=True)
class _Order:
    selling: Asset
    buying: Asset
    price: tuple[int, int]  # as the operation states it
    amount: int  # selling amount; for a buy order, the amount to buy
    offer_id: int
    buy: bool = False
    passive: bool = False


def _outcome(
    op_type: X.OperationType,
    suffix: str,
    conversion: Conversion | None = None,
    effect: X.ManageOfferEffect = _EFFECT.MANAGE_OFFER_DELETED,
    offer: OfferEntry | None = None,
) -> OpOutcome:
    buy = op_type == _OT.MANAGE_BUY_OFFER
    prefix = "MANAGE_BUY_OFFER" if buy else "MANAGE_SELL_OFFER"
    code = (X.ManageBuyOfferResultCode if buy else X.ManageSellOfferResultCode)[f"{prefix}_{suffix}"]
    result_type = X.ManageBuyOfferResult if buy else X.ManageSellOfferResult
    if suffix != "SUCCESS":
        result = result_type(code)
    else:
        resting = X.ManageOfferSuccessResultOffer(effect, offer=offer_xdr(offer) if offer is not None else None)
        result = result_type(code, success=X.ManageOfferSuccessResult(conversion.atoms, resting))
    arm = {
        _OT.MANAGE_SELL_OFFER: "manage_sell_offer_result",
        _OT.MANAGE_BUY_OFFER: "manage_buy_offer_result",
        _OT.CREATE_PASSIVE_SELL_OFFER: "create_passive_sell_offer_result",
    }[op_type]
    success = suffix == "SUCCESS"
    return OpOutcome(inner_result(op_type, **{arm: result}), success, conversion.moves if success else [])


def _price(price: X.Price) -> tuple[int, int]:
    return price.n.int32, price.d.int32


def manage_sell_offer(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.manage_sell_offer_op
    order = _Order(
        asset_from_xdr(op.selling), asset_from_xdr(op.buying), _price(op.price), op.amount.int64, op.offer_id.int64
    )
    return _manage(ctx, _OT.MANAGE_SELL_OFFER, order)


def manage_buy_offer(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.manage_buy_offer_op
    order = _Order(
        asset_from_xdr(op.selling),
        asset_from_xdr(op.buying),
        _price(op.price),
        op.buy_amount.int64,
        op.offer_id.int64,
        buy=True,
    )
    return _manage(ctx, _OT.MANAGE_BUY_OFFER, order)


def create_passive_sell_offer(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.create_passive_sell_offer_op
    order = _Order(
        asset_from_xdr(op.selling), asset_from_xdr(op.buying), _price(op.price), op.amount.int64, 0, passive=True
    )
    return _manage(ctx, _OT.CREATE_PASSIVE_SELL_OFFER, order)


def _line_refusal(ctx: OpContext, asset: Asset, side: str) -> str | None:
    if asset.is_native() or asset.issuer == ctx.source:
        return None
    line = ctx.txn.trustline(ctx.source, asset)
    if line is None:
        return f"{side}_NO_TRUST"
    if not line.flags & AUTHORIZED_FLAG:
        return f"{side}_NOT_AUTHORIZED"
    return None


def _manage(ctx: OpContext, op_type: X.OperationType, order: _Order) -> OpOutcome:
    txn = ctx.txn
    nothing = Conversion()
    n, d = order.price
    if (
        order.selling == order.buying
        or n <= 0
        or d <= 0
        or order.amount < 0
        or (order.amount == 0 and not order.offer_id)
    ):
        return _outcome(op_type, "MALFORMED", nothing)
    existing = None
    if order.offer_id:
        existing = txn.offer(ctx.source, order.offer_id)
        if existing is None:
            return _outcome(op_type, "NOT_FOUND", nothing)
        reserve_offer(txn, existing, -1)  # the managed offer is taken off the book first
    if order.amount == 0:
        _drop(ctx, existing)
        return _outcome(op_type, "SUCCESS", nothing)
    for asset, side in ((order.selling, "SELL"), (order.buying, "BUY")):
        if (refusal := _line_refusal(ctx, asset, side)) is not None:
            return _outcome(op_type, refusal, nothing)
    needed = cost(order.amount, order.price) if order.buy else order.amount
    spare = available(txn, ctx.source, order.selling, ctx.ledger.base_reserve) or 0
    if existing is None and order.selling.is_native():
        spare -= ctx.ledger.base_reserve  # a new offer is a sub-entry: its reserve is not for sale
    if spare < needed:
        return _outcome(op_type, "UNDERFUNDED", nothing)
    account = txn.account(ctx.source)
    if existing is None and account.balance - account.selling_liabilities < min_balance(
        account, ctx.ledger.base_reserve, extra_sub_entries=1
    ):
        return _outcome(op_type, "LOW_RESERVE", nothing)

    # the taker acquires what it buys (wheat) and pays with what it sells (sheep)
    limit = order.price if order.buy else (d, n)
    crossed = cross_book(
        txn,
        ctx.source,
        order.buying,
        order.selling,
        ctx.ledger.base_reserve,
        wheat_wanted=order.amount if order.buy else None,
        sheep_budget=None if order.buy else order.amount,
        limit=limit,
        passive=order.passive,
    )
    if crossed is Shortfall.CROSS_SELF:
        return _outcome(op_type, "CROSS_SELF", nothing)
    if debit(txn, ctx.source, order.selling, crossed.sent, ctx.ledger.base_reserve) is not None:
        return _outcome(op_type, "UNDERFUNDED", nothing)
    if credit(txn, ctx.source, order.buying, crossed.received) is not None:
        return _outcome(op_type, "LINE_FULL", nothing)

    if order.buy:
        resting_amount = (order.amount - crossed.received) * n // d
        resting_price = (d, n)
    else:
        resting_amount = order.amount - crossed.sent
        resting_price = order.price
    resting_amount = min(resting_amount, spare - crossed.sent)
    if crossed.filled or resting_amount <= 0:
        _drop(ctx, existing)
        return _outcome(op_type, "SUCCESS", crossed)
    if existing is not None:
        offer = replace(
            existing, selling=order.selling, buying=order.buying, amount=resting_amount, price=resting_price
        )
        effect = _EFFECT.MANAGE_OFFER_UPDATED
    else:
        offer = OfferEntry(
            ctx.source, txn.next_id(), order.selling, order.buying, resting_amount, resting_price, order.passive
        )
        account = txn.account(ctx.source)
        txn.put(replace(account, num_sub_entries=account.num_sub_entries + 1))
        effect = _EFFECT.MANAGE_OFFER_CREATED
    offer = txn.put(offer)
    reserve_offer(txn, offer)
    return _outcome(op_type, "SUCCESS", crossed, effect, offer)


def _drop(ctx: OpContext, existing: OfferEntry | None) -> None:
    """Delete the managed offer (its liabilities are already released)."""
    if existing is None:
        return
    ctx.txn.remove(existing.key)
    account = ctx.txn.account(ctx.source)
    ctx.txn.put(replace(account, num_sub_entries=account.num_sub_entries - 1))
