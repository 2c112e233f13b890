"""SEP-41 token events from contract events, and the Stellar Asset Contract check.

Two topic layouts exist. Since CAP-67 (TransactionMetaV4) a SAC writes
  transfer: [transfer, from, to, "CODE:ISSUER"]   mint: [mint, to, asset]
  burn:     [burn, from, asset]                   clawback: [clawback, from, asset]
with data either an i128 amount or a map {amount: i128, to_muxed_id: u64|bytes|string|void}.
Before it (TransactionMetaV3) mint and clawback carried the admin first
([mint, admin, to, asset], [clawback, admin, from, asset]) and data was a bare i128.
The trailing asset string marks a SAC event only when the asset's SAC id equals the emitting
contract; anything else is a custom token, kept with no asset and named by its contract.
"""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ttp.assets import Asset, parse_sep11, sac_contract_id
from obsrvr_ray.ttp.events import BURN, CLAWBACK, MINT, TRANSFER, Event, MalformedEvent, MuxedInfo

SC = X.SCValType
_KINDS = (TRANSFER, MINT, BURN, CLAWBACK)
# topics a SAC event has, per layout: the function name, the addresses, then the asset string
_SAC_TOPICS_V4 = {TRANSFER: 4, MINT: 3, BURN: 3, CLAWBACK: 3}
_SAC_TOPICS_V3 = {TRANSFER: 4, MINT: 4, BURN: 3, CLAWBACK: 4}


def i128(value: X.SCVal) -> int:
    parts = value.i128
    return (parts.hi.int64 << 64) | parts.lo.uint64


def address(value: X.SCVal) -> str:
    """Strkey of an SCAddress value (G, C, M, B or L)."""
    if value.type != SC.SCV_ADDRESS:
        raise MalformedEvent(f"expected an address, got {value.type.name}")
    addr = value.address
    kind = addr.type
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT:
        return strkey.account(addr.account_id.account_id.ed25519.uint256)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return strkey.contract(addr.contract_id.contract_id.hash)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT:
        m = addr.muxed_account
        return strkey.muxed(m.ed25519.uint256, m.id.uint64)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE:
        return strkey.claimable_balance(addr.claimable_balance_id.v0.hash)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_LIQUIDITY_POOL:
        return strkey.liquidity_pool(addr.liquidity_pool_id.pool_id.hash)
    raise MalformedEvent(f"unknown address type {kind}")


def symbol(value: X.SCVal) -> str | None:
    if value.type != SC.SCV_SYMBOL:
        return None
    return value.sym.sc_symbol.decode("utf-8", errors="replace")


def _data_v4(data: X.SCVal) -> tuple[int, MuxedInfo | None]:
    """Amount and muxed info from a CAP-67 event's data (an i128, or a map with `amount`)."""
    if data.type == SC.SCV_I128:
        return i128(data), None
    if data.type != SC.SCV_MAP:
        raise MalformedEvent(f"data is {data.type.name}, not an i128 amount")
    if data.map is None:
        raise MalformedEvent("data map is empty")
    amount = None
    muxed = None
    for entry in data.map.sc_map:
        key = symbol(entry.key)
        if key is None:
            raise MalformedEvent("data map key is not a symbol")
        val = entry.val
        if key == "amount":
            if val.type != SC.SCV_I128:
                raise MalformedEvent(f"amount is {val.type.name}, not i128")
            amount = i128(val)
        elif key == "to_muxed_id":
            if val.type == SC.SCV_U64:
                muxed = MuxedInfo(id=val.u64.uint64)
            elif val.type == SC.SCV_BYTES:
                muxed = MuxedInfo(hash=val.bytes.sc_bytes)
            elif val.type == SC.SCV_STRING:
                muxed = MuxedInfo(text=val.str.sc_string.decode("utf-8", errors="replace"))
            elif val.type != SC.SCV_VOID:
                raise MalformedEvent(f"to_muxed_id is {val.type.name}")
    if amount is None:
        raise MalformedEvent("data map has no amount")
    return amount, muxed


def _sac_asset(topics: list[X.SCVal], expected: int, contract: str, passphrase: str) -> Asset | None:
    if len(topics) != expected or topics[-1].type != SC.SCV_STRING:
        return None
    text = topics[-1].str.sc_string.decode("utf-8", errors="replace")
    asset = parse_sep11(text) if text else None
    if asset is None or sac_contract_id(asset, passphrase) != contract:
        return None
    return asset


def parse_token_event(
    event: X.ContractEvent, *, v4_layout: bool, passphrase: str, tx_index: int, tx_hash: str, op_index: int
) -> Event:
    """One SEP-41 event (SAC or custom token); MalformedEvent says why an event is not one."""
    if event.type != X.ContractEventType.CONTRACT or event.contract_id is None or event.body.v != 0:
        raise MalformedEvent("not a contract event with a contract id")
    topics = event.body.v0.topics
    if len(topics) < 2:
        raise MalformedEvent(f"{len(topics)} topics")
    fn = symbol(topics[0])
    if fn is None:
        raise MalformedEvent("first topic is not a symbol")
    data = event.body.v0.data
    if v4_layout:
        amount, muxed = _data_v4(data)
    else:
        if data.type != SC.SCV_I128:
            raise MalformedEvent(f"data is {data.type.name}, not an i128 amount")
        amount, muxed = i128(data), None
    if fn not in _KINDS:
        raise MalformedEvent(f"{fn!r} is not a token movement")
    contract = strkey.contract(event.contract_id.contract_id.hash)
    if fn == TRANSFER:
        if len(topics) < 3:
            raise MalformedEvent("transfer with fewer than 3 topics")
        from_, to = address(topics[1]), address(topics[2])
    elif v4_layout:
        if fn in (MINT, CLAWBACK) and len(topics) >= 3 and topics[2].type != SC.SCV_STRING:
            raise MalformedEvent(f"{fn} with an admin topic in a CAP-67 event")
        party = address(topics[1])
        from_, to = (None, party) if fn == MINT else (party, None)
    elif fn == BURN:
        from_, to = address(topics[1]), None
    else:
        if len(topics) < 3:
            raise MalformedEvent(f"{fn} with fewer than 3 topics")
        address(topics[1])  # the admin: must be an address, not a party to the movement
        party = address(topics[2])
        from_, to = (None, party) if fn == MINT else (party, None)
    expected = (_SAC_TOPICS_V4 if v4_layout else _SAC_TOPICS_V3)[fn]
    asset = _sac_asset(topics, expected, contract, passphrase)
    return Event(fn, amount=amount, asset=asset, contract_id=contract, tx_index=tx_index, tx_hash=tx_hash,
                 op_index=op_index, from_=from_, to=to, to_muxed=muxed)
