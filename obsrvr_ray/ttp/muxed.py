"""Muxed destination info: the M address's id, or else the transaction memo (id, text, hash)."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import MuxedInfo


def destination_info(ctx: TxContext, destination: str) -> MuxedInfo | None:
    """Only for account destinations; Soroban transactions before protocol 23 carry none."""
    if not destination.startswith(("G", "M")):
        return None
    if ctx.is_soroban and ctx.protocol < 23:
        return None
    if destination.startswith("M"):
        payload = strkey.decode(destination)[1]
        return MuxedInfo(id=int.from_bytes(payload[32:40], "big"))
    memo = E.inner_transaction(ctx.tx.envelope).memo
    kind = memo.type
    if kind == X.MemoType.MEMO_ID:
        return MuxedInfo(id=memo.id.uint64)
    if kind == X.MemoType.MEMO_TEXT:
        return MuxedInfo(text=memo.text.decode("utf-8", errors="replace"))
    if kind == X.MemoType.MEMO_HASH:
        return MuxedInfo(hash=memo.hash.hash)
    if kind == X.MemoType.MEMO_RETURN:
        return MuxedInfo(hash=memo.ret_hash.hash)
    return None
