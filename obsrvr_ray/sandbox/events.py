"""The unified asset events (CAP-67) that protocol 23+ core writes into TransactionMetaV4.

Each event is published by the Stellar Asset Contract of the asset it moves (deployed or not):
`fee` at transaction level, before any transaction applies; `transfer`, `mint` (the issuer
sends) and `burn` (the issuer receives) per operation. When a movement lands at the
operation's destination, the data becomes a map with `to_muxed_id`: the destination's muxed id,
or else the transaction memo (id → u64, text → string, hash/return → bytes); a burn has no
recipient and carries none.
"""

from __future__ import annotations

from functools import lru_cache

from stellar_sdk import Asset, StrKey, scval
from stellar_sdk import xdr as X

from obsrvr_ray.sandbox.ops import Move
from obsrvr_ray.sandbox.state import account_id_xdr, asset_string

_NATIVE = Asset.native()
_NO_EXT = X.ExtensionPoint(0)


@lru_cache(maxsize=1024)
def contract_id(asset: Asset, passphrase: str) -> X.ContractID:
    """The asset's Stellar Asset Contract id, which depends on the network."""
    return X.ContractID(X.Hash(StrKey.decode_contract(asset.contract_id(passphrase))))


@lru_cache(maxsize=1024)
def _asset_name(asset: Asset) -> X.SCVal:
    return scval.to_string(asset_string(asset))


def _address(account: str) -> X.SCVal:
    return X.SCVal(
        X.SCValType.SCV_ADDRESS,
        address=X.SCAddress(X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT, account_id=account_id_xdr(account)),
    )


def _event(asset: Asset, passphrase: str, topics: list[X.SCVal], data: X.SCVal) -> X.ContractEvent:
    return X.ContractEvent(
        ext=_NO_EXT,
        contract_id=contract_id(asset, passphrase),
        type=X.ContractEventType.CONTRACT,
        body=X.ContractEventBody(0, v0=X.ContractEventV0(topics=topics, data=data)),
    )


def fee_event(fee_source: str, amount: int, passphrase: str) -> X.TransactionEvent:
    """Fee charged up front (positive); a Soroban refund would follow after all transactions."""
    event = _event(_NATIVE, passphrase, [scval.to_symbol("fee"), _address(fee_source)], scval.to_int128(amount))
    return X.TransactionEvent(stage=X.TransactionEventStage.TRANSACTION_EVENT_STAGE_BEFORE_ALL_TXS, event=event)


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


def move_event(move: Move, memo: X.Memo, passphrase: str) -> X.ContractEvent:
    asset = move.asset
    name = _asset_name(asset)
    amount = scval.to_int128(move.amount)
    if not asset.is_native() and move.receiver == asset.issuer and move.sender != asset.issuer:
        return _event(asset, passphrase, [scval.to_symbol("burn"), _address(move.sender), name], amount)
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
        return _event(asset, passphrase, [scval.to_symbol("mint"), receiver, name], data)
    return _event(asset, passphrase, [scval.to_symbol("transfer"), _address(move.sender), receiver, name], data)
