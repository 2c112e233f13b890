"""Payment and the two path payments.

A payment (like a strict-receive path payment) credits the destination before debiting the
source; a strict-send path payment debits the source first. That order decides which failure
code a transaction gets when more than one check would fail. Each hop of a path converts
through the order book or a liquidity pool (see exchange.py); the source is the taker of every
trade, so the events show it paying each seller and being paid back, then paying the
destination. A path with the same asset at both ends and nothing between is a plain transfer.
"""

from __future__ import annotations

import itertools

from stellar_sdk import Asset
from stellar_sdk import xdr as X

from obsrvr_sandbox.addresses import account_id_xdr
from obsrvr_sandbox.moves import Move
from obsrvr_sandbox.ops.balances import Refusal, credit, debit
from obsrvr_sandbox.ops.base import OpContext, OpOutcome, asset_from_xdr, inner_result, muxed_address
from obsrvr_sandbox.ops.exchange import Conversion, Shortfall, convert_receive, convert_send

_DEST_CODES = {
    Refusal.NO_ACCOUNT: "NO_DESTINATION",
    Refusal.NO_TRUST: "NO_TRUST",
    Refusal.NOT_AUTHORIZED: "NOT_AUTHORIZED",
    Refusal.LINE_FULL: "LINE_FULL",
}
_SOURCE_CODES = {
    Refusal.NO_TRUST: "SRC_NO_TRUST",
    Refusal.NOT_AUTHORIZED: "SRC_NOT_AUTHORIZED",
    Refusal.UNDERFUNDED: "UNDERFUNDED",
}


def payment(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.payment_op
    destination, muxed_id = muxed_address(op.destination)
    asset = asset_from_xdr(op.asset)
    amount = op.amount.int64

    def outcome(suffix: str) -> OpOutcome:
        code = X.PaymentResultCode[f"PAYMENT_{suffix}"]
        result = inner_result(X.OperationType.PAYMENT, payment_result=X.PaymentResult(code))
        if suffix != "SUCCESS":
            return OpOutcome(result, False)
        return OpOutcome(result, True, [Move(asset, ctx.source, destination, amount, True, muxed_id)])

    if ctx.txn.account(destination) is None:
        return outcome("NO_DESTINATION")
    if (refusal := credit(ctx.txn, destination, asset, amount)) is not None:
        return outcome(_DEST_CODES[refusal])
    if (refusal := debit(ctx.txn, ctx.source, asset, amount, ctx.ledger.base_reserve)) is not None:
        return outcome(_SOURCE_CODES[refusal])
    return outcome("SUCCESS")


def _hops(send: X.Asset, path: list[X.Asset], dest: X.Asset) -> list[tuple[Asset, Asset]]:
    """(from, to) of each conversion along the path; an asset repeated in a row is no hop."""
    assets = [asset_from_xdr(asset) for asset in (send, *path, dest)]
    return [(a, b) for a, b in itertools.pairwise(assets) if a != b]


_SHORTFALL_CODES = {Shortfall.TOO_FEW_OFFERS: "TOO_FEW_OFFERS", Shortfall.CROSS_SELF: "OFFER_CROSS_SELF"}


def path_payment_strict_receive(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    """Deliver exactly `dest_amount`: convert hop by hop from the destination back to the
    source, then charge the source what the first hop asked."""
    op = body.path_payment_strict_receive_op
    destination, muxed_id = muxed_address(op.destination)
    asset = asset_from_xdr(op.dest_asset)
    amount = op.dest_amount.int64
    conversions: list[Conversion] = []

    def outcome(suffix: str) -> OpOutcome:
        code = X.PathPaymentStrictReceiveResultCode[f"PATH_PAYMENT_STRICT_RECEIVE_{suffix}"]
        if suffix != "SUCCESS":
            result = X.PathPaymentStrictReceiveResult(code)
            return OpOutcome(_wrap_receive(result), False)
        atoms, moves = _trades(conversions)
        success = X.PathPaymentStrictReceiveResultSuccess(offers=atoms, last=_last(destination, op.dest_asset, amount))
        result = X.PathPaymentStrictReceiveResult(code, success=success)
        moves.append(Move(asset, ctx.source, destination, amount, True, muxed_id))
        return OpOutcome(_wrap_receive(result), True, moves)

    if ctx.txn.account(destination) is None:
        return outcome("NO_DESTINATION")
    if (refusal := credit(ctx.txn, destination, asset, amount)) is not None:
        return outcome(_DEST_CODES[refusal])
    needed = amount
    for sheep, wheat in reversed(_hops(op.send_asset, op.path, op.dest_asset)):
        converted = convert_receive(ctx.txn, ctx.source, sheep, wheat, needed, ctx.ledger.base_reserve)
        if isinstance(converted, Shortfall):
            return outcome(_SHORTFALL_CODES[converted])
        conversions.insert(0, converted)
        needed = converted.sent
    if needed > op.send_max.int64:
        return outcome("OVER_SENDMAX")
    send_asset = asset_from_xdr(op.send_asset)
    if (refusal := debit(ctx.txn, ctx.source, send_asset, needed, ctx.ledger.base_reserve)) is not None:
        return outcome(_SOURCE_CODES[refusal])
    return outcome("SUCCESS")


def path_payment_strict_send(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    """Spend exactly `send_amount`: charge the source, convert hop by hop, deliver the rest."""
    op = body.path_payment_strict_send_op
    destination, muxed_id = muxed_address(op.destination)
    asset = asset_from_xdr(op.dest_asset)
    conversions: list[Conversion] = []
    delivered = op.send_amount.int64

    def outcome(suffix: str) -> OpOutcome:
        code = X.PathPaymentStrictSendResultCode[f"PATH_PAYMENT_STRICT_SEND_{suffix}"]
        if suffix != "SUCCESS":
            return OpOutcome(_wrap_send(X.PathPaymentStrictSendResult(code)), False)
        atoms, moves = _trades(conversions)
        success = X.PathPaymentStrictSendResultSuccess(offers=atoms, last=_last(destination, op.dest_asset, delivered))
        result = X.PathPaymentStrictSendResult(code, success=success)
        moves.append(Move(asset, ctx.source, destination, delivered, True, muxed_id))
        return OpOutcome(_wrap_send(result), True, moves)

    if ctx.txn.account(destination) is None:
        return outcome("NO_DESTINATION")
    send_asset = asset_from_xdr(op.send_asset)
    if (refusal := debit(ctx.txn, ctx.source, send_asset, delivered, ctx.ledger.base_reserve)) is not None:
        return outcome(_SOURCE_CODES[refusal])
    for sheep, wheat in _hops(op.send_asset, op.path, op.dest_asset):
        converted = convert_send(ctx.txn, ctx.source, sheep, wheat, delivered, ctx.ledger.base_reserve)
        if isinstance(converted, Shortfall):
            return outcome(_SHORTFALL_CODES[converted])
        conversions.append(converted)
        delivered = converted.received
    if delivered < op.dest_min.int64:
        return outcome("UNDER_DESTMIN")
    if (refusal := credit(ctx.txn, destination, asset, delivered)) is not None:
        return outcome(_DEST_CODES[refusal])
    return outcome("SUCCESS")


def _trades(conversions: list[Conversion]) -> tuple[list[X.ClaimAtom], list[Move]]:
    atoms: list[X.ClaimAtom] = []
    moves: list[Move] = []
    for conversion in conversions:
        atoms.extend(conversion.atoms)
        moves.extend(conversion.moves)
    return atoms, moves


def _last(destination: str, asset: X.Asset, amount: int) -> X.SimplePaymentResult:
    return X.SimplePaymentResult(destination=account_id_xdr(destination), asset=asset, amount=X.Int64(amount))


def _wrap_receive(result: X.PathPaymentStrictReceiveResult) -> X.OperationResult:
    return inner_result(X.OperationType.PATH_PAYMENT_STRICT_RECEIVE, path_payment_strict_receive_result=result)


def _wrap_send(result: X.PathPaymentStrictSendResult) -> X.OperationResult:
    return inner_result(X.OperationType.PATH_PAYMENT_STRICT_SEND, path_payment_strict_send_result=result)
