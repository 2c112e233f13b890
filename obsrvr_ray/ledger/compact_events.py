"""Contract events in compact form: what the token-transfer rules read.

    event = (contract C strkey | None, type, body version, (topic scval, ...), data scval)
    scval = (SCValType value, payload): bool, int (u32...i128), bytes, str (string and symbol,
            UTF-8 with U+FFFD for bad bytes), (scval, ...) (vec), ((key, value), ...) (map),
            strkey (address), None (void, or a type no rule reads)

The compiled decoder builds these straight from the meta's bytes while decoding the ledger; here they are built from
stellar-sdk objects, for the reference decoder and the pure-Python form. Both give equal tuples.
"""

from __future__ import annotations

from typing import NamedTuple

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger import meta as M
from obsrvr_ray.ledger.model import LedgerTransaction
from obsrvr_ray.xdr.lazy import LazyXdr

SC = X.SCValType
_AS_INT = {
    SC.SCV_U32: lambda v: v.u32.uint32, SC.SCV_I32: lambda v: v.i32.int32, SC.SCV_U64: lambda v: v.u64.uint64,
    SC.SCV_I64: lambda v: v.i64.int64, SC.SCV_TIMEPOINT: lambda v: v.timepoint.time_point.uint64,
    SC.SCV_DURATION: lambda v: v.duration.duration.uint64,
    SC.SCV_U128: lambda v: (v.u128.hi.uint64 << 64) | v.u128.lo.uint64,
    SC.SCV_I128: lambda v: (v.i128.hi.int64 << 64) | v.i128.lo.uint64,
}


def compact_address(addr: X.SCAddress) -> str:
    kind = addr.type
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT:
        return strkey.account(addr.account_id.account_id.ed25519.uint256)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return strkey.contract(addr.contract_id.contract_id.hash)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT:
        return strkey.muxed(addr.muxed_account.ed25519.uint256, addr.muxed_account.id.uint64)
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE:
        return strkey.claimable_balance(addr.claimable_balance_id.v0.hash)
    return strkey.liquidity_pool(addr.liquidity_pool_id.pool_id.hash)


def compact_scval(v: X.SCVal) -> tuple:
    kind = v.type
    if kind in _AS_INT:
        return kind.value, _AS_INT[kind](v)
    if kind == SC.SCV_BOOL:
        return kind.value, bool(v.b)
    if kind == SC.SCV_BYTES:
        return kind.value, v.bytes.sc_bytes
    if kind == SC.SCV_STRING:
        return kind.value, v.str.sc_string.decode("utf-8", errors="replace")
    if kind == SC.SCV_SYMBOL:
        return kind.value, v.sym.sc_symbol.decode("utf-8", errors="replace")
    if kind == SC.SCV_VEC:
        return kind.value, None if v.vec is None else tuple(compact_scval(x) for x in v.vec.sc_vec)
    if kind == SC.SCV_MAP:
        return kind.value, None if v.map is None else tuple((compact_scval(e.key), compact_scval(e.val))
                                                           for e in v.map.sc_map)
    if kind == SC.SCV_ADDRESS:
        return kind.value, compact_address(v.address)
    return kind.value, None


def compact_event(event: X.ContractEvent) -> tuple:
    contract = strkey.contract(event.contract_id.contract_id.hash) if event.contract_id is not None else None
    body = event.body.v0
    return (contract, event.type.value, event.body.v, tuple(compact_scval(t) for t in body.topics),
            compact_scval(body.data))


class MetaEvents(NamedTuple):
    """A transaction's contract events: transaction-level (with their stage) and per operation.
    Metas before v4 have no transaction-level events; v3 keeps its Soroban events on operation 1."""

    version: int
    tx_events: list[tuple[int, tuple]]
    op_events: list[list[tuple]]


def meta_events(tx: LedgerTransaction) -> MetaEvents:
    """What the compiled decoder read on its way past the meta when it left it encoded, else
    from the meta's stellar-sdk objects."""
    raw = tx.raw_meta
    if type(raw) is LazyXdr and raw.scanned_events is not None:
        return MetaEvents(4, *raw.scanned_events)
    meta = tx.meta
    ops = M.operation_metas(meta)
    op_events = [[compact_event(e) for e in M.operation_events(meta, i)] for i in range(len(ops))]
    tx_events = [(e.stage.value, compact_event(e.event)) for e in M.transaction_events(meta)]
    return MetaEvents(meta.v, tx_events, op_events)
