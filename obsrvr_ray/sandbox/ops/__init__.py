"""Applying operations, one module per kind; `apply_operation` dispatches on the XDR type.

A new kind (offers, liquidity pools, claimable balances, clawback, Soroban) adds a module and
an entry in `HANDLERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from stellar_sdk import xdr as X

from obsrvr_ray.sandbox.ops.accounts import create_account
from obsrvr_ray.sandbox.ops.base import Move, OpContext, OpOutcome, UnsupportedOperation
from obsrvr_ray.sandbox.ops.payments import path_payment_strict_receive, path_payment_strict_send, payment
from obsrvr_ray.sandbox.ops.trust import change_trust

__all__ = ["HANDLERS", "Move", "OpContext", "OpOutcome", "UnsupportedOperation", "apply_operation"]

HANDLERS: dict[X.OperationType, Callable[[OpContext, X.OperationBody], OpOutcome]] = {
    X.OperationType.CREATE_ACCOUNT: create_account,
    X.OperationType.PAYMENT: payment,
    X.OperationType.PATH_PAYMENT_STRICT_RECEIVE: path_payment_strict_receive,
    X.OperationType.PATH_PAYMENT_STRICT_SEND: path_payment_strict_send,
    X.OperationType.CHANGE_TRUST: change_trust,
}


def apply_operation(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    handler = HANDLERS.get(body.type)
    if handler is None:
        raise UnsupportedOperation(f"the sandbox does not apply {body.type.name} operations")
    return handler(ctx, body)
