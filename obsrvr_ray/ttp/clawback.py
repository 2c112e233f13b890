"""Clawback: the issuer takes an asset back from a holder's trustline."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray.ledger.accounts import base_account
from obsrvr_ray.ttp.assets import from_xdr
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import CLAWBACK, Event


def clawback(ctx: TxContext, op: X.Operation, op_index: int, _result: X.OperationResultTr) -> list[Event]:
    body = op.body.clawback_op
    asset = from_xdr(body.asset)
    return [Event(CLAWBACK, amount=body.amount.int64, asset=asset, contract_id=ctx.sac(asset),
                  from_=base_account(body.from_), **ctx.common(op_index))]
