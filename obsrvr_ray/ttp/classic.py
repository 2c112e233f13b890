"""Shared step of every classic-operation rule: an issuer-ruled event for a SAC asset, with the
destination's muxed info when the operation delivers to an account."""

from __future__ import annotations

from obsrvr_ray.ttp.assets import Asset
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import Event
from obsrvr_ray.ttp.issuer import classic_event
from obsrvr_ray.ttp.muxed import destination_info


def movement(ctx: TxContext, asset: Asset, from_: str, to: str, amount: int, op_index: int, *,
             with_muxed: bool) -> Event:
    muxed = destination_info(ctx, to) if with_muxed else None
    return classic_event(asset, from_, to, amount, contract_id=ctx.sac(asset), tx_index=ctx.index,
                         tx_hash=ctx.tx_hash, op_index=op_index, muxed=muxed)
