"""The unified asset events (CAP-67) that protocol 23+ core writes into TransactionMetaV4.

Each event is published by the Stellar Asset Contract of the asset it moves (deployed or not):
`fee` at transaction level, charged before any transaction applies and, for a Soroban
transaction, refunded (a negative amount) after all of them; `transfer`, `mint` (the issuer
sends), `burn` (the issuer receives) and `clawback` per operation. Holders are G accounts, L
liquidity pools, B claimable balances or C contracts. When a movement lands at the operation's
destination, the data becomes a map with `to_muxed_id`: the destination's muxed id, or else the
transaction memo (id → u64, text → string, hash/return → bytes); a burn has no recipient and
carries none.
"""

from __future__ import annotations

from functools import lru_cache

from stellar_sdk import Asset, scval
from stellar_sdk import xdr as X

from obsrvr_ray.ttp.assets import sac_contract_hash
from obsrvr_sandbox.addresses import sc_address
from obsrvr_sandbox.entries import asset_string
from obsrvr_sandbox.entry_xdr import asset_xdr
from obsrvr_sandbox.moves import Move

_NATIVE = Asset.native()
_NO_EXT = X.ExtensionPoint(0)
_NO_MEMO = X.Memo(X.MemoType.MEMO_NONE)
_STAGES = X.TransactionEventStage


@lru_cache(maxsize=1024)
def sac_contract_hash_of(asset: Asset, network_id: bytes) -> bytes:
    """The asset's Stellar Asset Contract id (the rule: obsrvr_ray.ttp.assets)."""
    return sac_contract_hash(asset_xdr(asset), network_id)


@lru_cache(maxsize=1024)
def _asset_name(asset: Asset) -> X.SCVal:
    return scval.to_string(asset_string(asset))


def _address(holder: str) -> X.SCVal:
    return X.SCVal(X.SCValType.SCV_ADDRESS, address=sc_address(holder))


def _event(asset: Asset, network_id: bytes, topics: list[X.SCVal], data: X.SCVal) -> X.ContractEvent:
    return X.ContractEvent(
        ext=_NO_EXT,
        contract_id=X.ContractID(X.Hash(sac_contract_hash_of(asset, network_id))),
        type=X.ContractEventType.CONTRACT,
        body=X.ContractEventBody(0, v0=X.ContractEventV0(topics=topics, data=data)),
    )


def fee_event(fee_source: str, amount: int, network_id: bytes, *, refund: bool = False) -> X.TransactionEvent:
    """The fee charged up front, or (negative) the Soroban refund after all transactions."""
    event = _event(_NATIVE, network_id, [scval.to_symbol("fee"), _address(fee_source)], scval.to_int128(amount))
    stage = _STAGES.TRANSACTION_EVENT_STAGE_AFTER_ALL_TXS if refund else _STAGES.TRANSACTION_EVENT_STAGE_BEFORE_ALL_TXS
    return X.TransactionEvent(stage=stage, event=event)


def memo_muxed_id(memo: X.Memo) -> X.SCVal | None:
    if memo.type == X.MemoType.MEMO_ID:
        return scval.to_uint64(memo.id.uint64)
    if memo.type == X.MemoType.MEMO_TEXT:
        return scval.to_string(memo.text)
    if memo.type == X.MemoType.MEMO_HASH:
        return scval.to_bytes(memo.hash.hash)
    if memo.type == X.MemoType.MEMO_RETURN:
        return scval.to_bytes(memo.ret_hash.hash)
    return None


def move_event(move: Move, network_id: bytes, memo: X.Memo = _NO_MEMO) -> X.ContractEvent:
    asset = move.asset
    name = _asset_name(asset)
    amount = scval.to_int128(move.amount)
    if move.clawback:
        return _event(asset, network_id, [scval.to_symbol("clawback"), _address(move.sender), name], amount)
    if not asset.is_native() and move.receiver == asset.issuer and move.sender != asset.issuer:
        return _event(asset, network_id, [scval.to_symbol("burn"), _address(move.sender), name], amount)
    muxed_id = None
    if move.to_destination:
        if move.receiver_muxed_id is not None:
            muxed_id = scval.to_uint64(move.receiver_muxed_id)
        else:
            muxed_id = memo_muxed_id(memo)
    data = (
        amount
        if muxed_id is None
        else scval.to_map({scval.to_symbol("amount"): amount, scval.to_symbol("to_muxed_id"): muxed_id})
    )
    receiver = _address(move.receiver)
    if not asset.is_native() and move.sender == asset.issuer and move.receiver != asset.issuer:
        return _event(asset, network_id, [scval.to_symbol("mint"), receiver, name], data)
    return _event(asset, network_id, [scval.to_symbol("transfer"), _address(move.sender), receiver, name], data)
