"""Applying operations, one module per kind; `apply_operation` dispatches on the XDR type."""

from __future__ import annotations

from collections.abc import Callable

from stellar_sdk import xdr as X

from obsrvr_sandbox.ops.accounts import account_merge, create_account, set_options
from obsrvr_sandbox.ops.authorization import allow_trust, clawback, set_trust_line_flags
from obsrvr_sandbox.ops.base import OpContext, OpOutcome, UnsupportedOperation
from obsrvr_sandbox.ops.claimable import (
    claim_claimable_balance,
    clawback_claimable_balance,
    create_claimable_balance,
)
from obsrvr_sandbox.ops.liquidity import liquidity_pool_deposit, liquidity_pool_withdraw
from obsrvr_sandbox.ops.offers import create_passive_sell_offer, manage_buy_offer, manage_sell_offer
from obsrvr_sandbox.ops.payments import path_payment_strict_receive, path_payment_strict_send, payment
from obsrvr_sandbox.ops.soroban import invoke_host_function
from obsrvr_sandbox.ops.trust import change_trust

__all__ = ["HANDLERS", "OpContext", "OpOutcome", "UnsupportedOperation", "apply_operation"]

_OT = X.OperationType
HANDLERS: dict[X.OperationType, Callable[[OpContext, X.OperationBody], OpOutcome]] = {
    _OT.CREATE_ACCOUNT: create_account,
    _OT.PAYMENT: payment,
    _OT.PATH_PAYMENT_STRICT_RECEIVE: path_payment_strict_receive,
    _OT.PATH_PAYMENT_STRICT_SEND: path_payment_strict_send,
    _OT.MANAGE_SELL_OFFER: manage_sell_offer,
    _OT.MANAGE_BUY_OFFER: manage_buy_offer,
    _OT.CREATE_PASSIVE_SELL_OFFER: create_passive_sell_offer,
    _OT.SET_OPTIONS: set_options,
    _OT.CHANGE_TRUST: change_trust,
    _OT.ALLOW_TRUST: allow_trust,
    _OT.ACCOUNT_MERGE: account_merge,
    _OT.CREATE_CLAIMABLE_BALANCE: create_claimable_balance,
    _OT.CLAIM_CLAIMABLE_BALANCE: claim_claimable_balance,
    _OT.CLAWBACK: clawback,
    _OT.CLAWBACK_CLAIMABLE_BALANCE: clawback_claimable_balance,
    _OT.SET_TRUST_LINE_FLAGS: set_trust_line_flags,
    _OT.LIQUIDITY_POOL_DEPOSIT: liquidity_pool_deposit,
    _OT.LIQUIDITY_POOL_WITHDRAW: liquidity_pool_withdraw,
    _OT.INVOKE_HOST_FUNCTION: invoke_host_function,
}


def apply_operation(ctx: OpContext, body: X.OperationBody) -> OpOutcome:
    handler = HANDLERS.get(body.type)
    if handler is None:
        raise UnsupportedOperation(f"the sandbox does not apply {body.type.name} operations")
    return handler(ctx, body)
