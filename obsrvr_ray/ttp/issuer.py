"""The issuer rule: value leaving its issuer is minted, value reaching its issuer is burnt."""

from __future__ import annotations

from obsrvr_ray import strkey
from obsrvr_ray.ttp.assets import Asset
from obsrvr_ray.ttp.events import BURN, MINT, TRANSFER, Event, MuxedInfo


def account_of(address: str) -> str:
    """The G address behind a G or M address; other addresses unchanged."""
    if address.startswith("M"):
        return strkey.account(strkey.decode(address)[1][:32])
    return address


def classic_event(
    asset: Asset,
    from_: str,
    to: str,
    amount: int,
    *,
    contract_id: str,
    tx_index: int,
    tx_hash: str,
    op_index: int,
    muxed: MuxedInfo | None = None,
) -> Event:
    """A transfer, mint or burn between two addresses by the issuer rule (both issuer: transfer).
    `muxed` is the destination's muxed info, kept on transfers and mints, never on burns."""
    sender, receiver = account_of(from_), account_of(to)
    from_issuer = not asset.is_native and sender == asset.issuer
    to_issuer = not asset.is_native and receiver == asset.issuer
    common = dict(amount=amount, asset=asset, contract_id=contract_id, tx_index=tx_index, tx_hash=tx_hash,
                  op_index=op_index)
    if from_issuer and not to_issuer:
        return Event(MINT, to=receiver, to_muxed=muxed, **common)
    if to_issuer and not from_issuer:
        return Event(BURN, from_=sender, **common)
    return Event(TRANSFER, from_=sender, to=receiver, to_muxed=muxed, **common)
