"""Payment and the two path payments.

A payment (like a strict-receive path payment) credits the destination before debiting the
source; a strict-send path payment debits the source first. That order decides which failure
code a transaction gets when more than one check would fail. The sandbox holds no offers or
liquidity pools yet, so a path payment that needs a conversion finds too few offers; one with
an empty path and the same asset on both ends moves the asset like a payment.
"""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray.sandbox.ops.balances import Refusal, credit, debit
from obsrvr_ray.sandbox.ops.base import Move, OpContext, OpOutcome, asset_from_xdr, inner_result, muxed_address
from obsrvr_ray.sandbox.state import account_id_xdr

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


def _needs_conversion(send_asset: X.Asset, dest_asset: X.Asset, path: list[X.Asset]) -> bool:
    return bool(path) or send_asset.to_xdr_bytes() != dest_asset.to_xdr_bytes()


def path_payment_strict_receive(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.path_payment_strict_receive_op
    destination, muxed_id = muxed_address(op.destination)
    asset = asset_from_xdr(op.dest_asset)
    amount = op.dest_amount.int64

    def outcome(suffix: str) -> OpOutcome:
        code = X.PathPaymentStrictReceiveResultCode[f"PATH_PAYMENT_STRICT_RECEIVE_{suffix}"]
        if suffix != "SUCCESS":
            result = X.PathPaymentStrictReceiveResult(code)
            return OpOutcome(_wrap_receive(result), False)
        success = X.PathPaymentStrictReceiveResultSuccess(offers=[], last=_last(destination, op.dest_asset, amount))
        result = X.PathPaymentStrictReceiveResult(code, success=success)
        return OpOutcome(_wrap_receive(result), True, [Move(asset, ctx.source, destination, amount, True, muxed_id)])

    if ctx.txn.account(destination) is None:
        return outcome("NO_DESTINATION")
    if (refusal := credit(ctx.txn, destination, asset, amount)) is not None:
        return outcome(_DEST_CODES[refusal])
    if _needs_conversion(op.send_asset, op.dest_asset, op.path):
        return outcome("TOO_FEW_OFFERS")
    if amount > op.send_max.int64:
        return outcome("OVER_SENDMAX")
    if (refusal := debit(ctx.txn, ctx.source, asset, amount, ctx.ledger.base_reserve)) is not None:
        return outcome(_SOURCE_CODES[refusal])
    return outcome("SUCCESS")


def path_payment_strict_send(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    op = body.path_payment_strict_send_op
    destination, muxed_id = muxed_address(op.destination)
    asset = asset_from_xdr(op.send_asset)
    amount = op.send_amount.int64

    def outcome(suffix: str) -> OpOutcome:
        code = X.PathPaymentStrictSendResultCode[f"PATH_PAYMENT_STRICT_SEND_{suffix}"]
        if suffix != "SUCCESS":
            return OpOutcome(_wrap_send(X.PathPaymentStrictSendResult(code)), False)
        success = X.PathPaymentStrictSendResultSuccess(offers=[], last=_last(destination, op.dest_asset, amount))
        result = X.PathPaymentStrictSendResult(code, success=success)
        return OpOutcome(_wrap_send(result), True, [Move(asset, ctx.source, destination, amount, True, muxed_id)])

    if ctx.txn.account(destination) is None:
        return outcome("NO_DESTINATION")
    if (refusal := debit(ctx.txn, ctx.source, asset, amount, ctx.ledger.base_reserve)) is not None:
        return outcome(_SOURCE_CODES[refusal])
    if _needs_conversion(op.send_asset, op.dest_asset, op.path):
        return outcome("TOO_FEW_OFFERS")
    if amount < op.dest_min.int64:
        return outcome("UNDER_DESTMIN")
    if (refusal := credit(ctx.txn, destination, asset, amount)) is not None:
        return outcome(_DEST_CODES[refusal])
    return outcome("SUCCESS")


def _last(destination: str, asset: X.Asset, amount: int) -> X.SimplePaymentResult:
    return X.SimplePaymentResult(destination=account_id_xdr(destination), asset=asset, amount=X.Int64(amount))


def _wrap_receive(result: X.PathPaymentStrictReceiveResult) -> X.OperationResult:
    return inner_result(X.OperationType.PATH_PAYMENT_STRICT_RECEIVE, path_payment_strict_receive_result=result)


def _wrap_send(result: X.PathPaymentStrictSendResult) -> X.OperationResult:
    return inner_result(X.OperationType.PATH_PAYMENT_STRICT_SEND, path_payment_strict_send_result=result)
