"""SEP-41 token events from contract events, and the Stellar Asset Contract check.

Two topic layouts exist. Since CAP-67 (TransactionMetaV4) a SAC writes
  transfer: [transfer, from, to, "CODE:ISSUER"]   mint: [mint, to, asset]
  burn:     [burn, from, asset]                   clawback: [clawback, from, asset]
with data either an i128 amount or a map {amount: i128, to_muxed_id: u64|bytes|string|void}.
Before it (TransactionMetaV3) mint and clawback carried the admin first
([mint, admin, to, asset], [clawback, admin, from, asset]) and data was a bare i128. Custom
tokens may keep that admin-first layout in V4 meta: the third topic, an address, tells it.
The trailing asset string marks a SAC event only when the asset's SAC id equals the emitting
contract; anything else is a custom token, kept with no asset and named by its contract.

Events arrive in the compact form of obsrvr_ray.ledger.compact_events (tuples), whichever decoder
produced them.
"""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray.ttp.assets import Asset, sac_of_sep11
from obsrvr_ray.ttp.events import BURN, CLAWBACK, MINT, TRANSFER, Event, MalformedEvent, MuxedInfo

_CONTRACT = X.ContractEventType.CONTRACT.value
_BOOL, _VOID, _U64, _I128, _BYTES, _STRING, _SYMBOL, _MAP, _ADDRESS = (
    X.SCValType.SCV_BOOL.value, X.SCValType.SCV_VOID.value, X.SCValType.SCV_U64.value, X.SCValType.SCV_I128.value,
    X.SCValType.SCV_BYTES.value, X.SCValType.SCV_STRING.value, X.SCValType.SCV_SYMBOL.value,
    X.SCValType.SCV_MAP.value, X.SCValType.SCV_ADDRESS.value)
_NAMES = {t.value: t.name for t in X.SCValType}
_KINDS = (TRANSFER, MINT, BURN, CLAWBACK)
# topics a SAC event has, per layout: the function name, the addresses, then the asset string
_SAC_TOPICS_V4 = {TRANSFER: 4, MINT: 3, BURN: 3, CLAWBACK: 3}
_SAC_TOPICS_V3 = {TRANSFER: 4, MINT: 4, BURN: 3, CLAWBACK: 4}


def type_name(value: tuple) -> str:
    return _NAMES.get(value[0], str(value[0]))


def address(value: tuple) -> str:
    """Strkey of an address value (G, C, M, B or L)."""
    if value[0] != _ADDRESS:
        raise MalformedEvent(f"expected an address, got {type_name(value)}")
    return value[1]


def symbol(value: tuple) -> str | None:
    return value[1] if value[0] == _SYMBOL else None


def i128(value: tuple) -> int:
    return value[1]


def _data_v4(data: tuple) -> tuple[int, MuxedInfo | None]:
    """Amount and muxed info from a CAP-67 event's data (an i128, or a map with `amount`)."""
    kind = data[0]
    if kind == _I128:
        return data[1], None
    if kind != _MAP:
        raise MalformedEvent(f"data is {type_name(data)}, not an i128 amount")
    if data[1] is None:
        raise MalformedEvent("data map is empty")
    amount = None
    muxed = None
    for key, val in data[1]:
        name = symbol(key)
        if name is None:
            raise MalformedEvent("data map key is not a symbol")
        if name == "amount":
            if val[0] != _I128:
                raise MalformedEvent(f"amount is {type_name(val)}, not i128")
            amount = val[1]
        elif name == "to_muxed_id":
            muxed = _muxed_id(val)
    if amount is None:
        raise MalformedEvent("data map has no amount")
    return amount, muxed


def _muxed_id(val: tuple) -> MuxedInfo | None:
    """CAP-67's to_muxed_id: a u64 id, bytes (a hash), a string (text), or void (none)."""
    if val[0] == _U64:
        return MuxedInfo(id=val[1])
    if val[0] == _BYTES:
        return MuxedInfo(hash=val[1])
    if val[0] == _STRING:
        return MuxedInfo(text=val[1])
    if val[0] != _VOID:
        raise MalformedEvent(f"to_muxed_id is {type_name(val)}")
    return None


def _sac_asset(topics: tuple[tuple, ...], expected: int, contract: str, passphrase: str) -> Asset | None:
    if len(topics) != expected or topics[-1][0] != _STRING:
        return None
    found = sac_of_sep11(topics[-1][1], passphrase)
    if found is None or found[1] != contract:
        return None
    return found[0]


def _admin_first(topics: tuple[tuple, ...]) -> bool:
    """A mint or clawback in the older layout, [fn, admin, party, ...]: its third topic is an
    address, where CAP-67's is the asset string or nothing. Custom tokens built on older SDKs
    still emit it inside TransactionMetaV4 (the DeFindex vault share token in pubnet ledger
    63092982); the party is the third topic, not the admin (stellar/go reports the admin)."""
    return len(topics) >= 3 and topics[2][0] == _ADDRESS


def parse_token_event(
    event: tuple, *, v4_layout: bool, passphrase: str, tx_index: int, tx_hash: str, op_index: int
) -> Event:
    """One SEP-41 event (SAC or custom token); MalformedEvent says why an event is not one."""
    contract_id, kind, body_v, topics, data = event
    if kind != _CONTRACT or contract_id is None or body_v != 0:
        raise MalformedEvent("not a contract event with a contract id")
    if len(topics) < 2:
        raise MalformedEvent(f"{len(topics)} topics")
    fn = symbol(topics[0])
    if fn is None:
        raise MalformedEvent("first topic is not a symbol")
    if v4_layout:
        amount, muxed = _data_v4(data)
    else:
        if data[0] != _I128:
            raise MalformedEvent(f"data is {type_name(data)}, not an i128 amount")
        amount, muxed = data[1], None
    if fn not in _KINDS:
        raise MalformedEvent(f"{fn!r} is not a token movement")
    from_, to, v4_layout = _parties(fn, topics, v4_layout)
    expected = (_SAC_TOPICS_V4 if v4_layout else _SAC_TOPICS_V3)[fn]
    asset = _sac_asset(topics, expected, contract_id, passphrase)
    return Event(fn, amount, asset, contract_id, tx_index, tx_hash, op_index, from_, to, muxed)


def _parties(fn: str, topics: tuple[tuple, ...], v4_layout: bool) -> tuple[str | None, str | None, bool]:
    """(from, to) of a movement by its topics, and whether its topics are in CAP-67's layout (a
    mint or clawback in the older layout is counted as such by the SAC check)."""
    if fn == TRANSFER:
        if len(topics) < 3:
            raise MalformedEvent("transfer with fewer than 3 topics")
        return address(topics[1]), address(topics[2]), v4_layout
    if fn == BURN:
        return address(topics[1]), None, v4_layout
    if v4_layout and not _admin_first(topics):
        party = address(topics[1])
        return (None, party, True) if fn == MINT else (party, None, True)
    if len(topics) < 3:
        raise MalformedEvent(f"{fn} with fewer than 3 topics")
    address(topics[1])  # the admin: must be an address, not a party to the movement
    party = address(topics[2])
    return (None, party, False) if fn == MINT else (party, None, False)
