"""Contract events in compact form: what the token-transfer rules read.

    event = (contract_id bytes | None, type, body version, [topic scval], data scval)
    scval = (SCValType value, payload): bool, int (u32...i128), bytes (bytes, string, symbol),
            [scval] (vec), [(key, value)] (map), (address type, 32-byte key, mux id | None)
            (address), None (void, or a type no rule reads)

The compiled decoder builds these straight from the meta's bytes; here they are built from
stellar-sdk objects, for the reference decoder and the pure-Python form. Both give equal tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import xdr as X

from obsrvr_ray.ledger import meta as M
from obsrvr_ray.ledger.model import LedgerTransaction
from obsrvr_ray.xdr.fast import Codec
from obsrvr_ray.xdr.lazy import LazyXdr

SC = X.SCValType
_AS_INT = {
    SC.SCV_U32: lambda v: v.u32.uint32, SC.SCV_I32: lambda v: v.i32.int32, SC.SCV_U64: lambda v: v.u64.uint64,
    SC.SCV_I64: lambda v: v.i64.int64, SC.SCV_TIMEPOINT: lambda v: v.timepoint.time_point.uint64,
    SC.SCV_DURATION: lambda v: v.duration.duration.uint64,
    SC.SCV_U128: lambda v: (v.u128.hi.uint64 << 64) | v.u128.lo.uint64,
    SC.SCV_I128: lambda v: (v.i128.hi.int64 << 64) | v.i128.lo.uint64,
}


def compact_address(addr: X.SCAddress) -> tuple[int, bytes, int | None]:
    kind = addr.type
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT:
        return kind.value, addr.account_id.account_id.ed25519.uint256, None
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return kind.value, addr.contract_id.contract_id.hash, None
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT:
        return kind.value, addr.muxed_account.ed25519.uint256, addr.muxed_account.id.uint64
    if kind == X.SCAddressType.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE:
        return kind.value, addr.claimable_balance_id.v0.hash, None
    return kind.value, addr.liquidity_pool_id.pool_id.hash, None


def compact_scval(v: X.SCVal) -> tuple:
    kind = v.type
    if kind in _AS_INT:
        return kind.value, _AS_INT[kind](v)
    if kind == SC.SCV_BOOL:
        return kind.value, bool(v.b)
    if kind == SC.SCV_BYTES:
        return kind.value, v.bytes.sc_bytes
    if kind == SC.SCV_STRING:
        return kind.value, v.str.sc_string
    if kind == SC.SCV_SYMBOL:
        return kind.value, v.sym.sc_symbol
    if kind == SC.SCV_VEC:
        return kind.value, None if v.vec is None else [compact_scval(x) for x in v.vec.sc_vec]
    if kind == SC.SCV_MAP:
        return kind.value, None if v.map is None else [(compact_scval(e.key), compact_scval(e.val))
                                                      for e in v.map.sc_map]
    if kind == SC.SCV_ADDRESS:
        return kind.value, compact_address(v.address)
    return kind.value, None


def compact_event(event: X.ContractEvent) -> tuple:
    contract = event.contract_id.contract_id.hash if event.contract_id is not None else None
    body = event.body.v0
    return (contract, event.type.value, event.body.v, [compact_scval(t) for t in body.topics],
            compact_scval(body.data))


@dataclass(frozen=True)
class MetaEvents:
    """A transaction's contract events: transaction-level (with their stage) and per operation.
    Metas before v4 have no transaction-level events; v3 keeps its Soroban events on operation 1."""

    version: int
    tx_events: list[tuple[int, tuple]]
    op_events: list[list[tuple]]


def meta_events(tx: LedgerTransaction, codec: Codec | None = None) -> MetaEvents:
    """From the meta's bytes when it is still encoded and the compiled scanner is at hand,
    else from its stellar-sdk objects."""
    raw = tx.raw_meta
    if codec is not None and type(raw) is LazyXdr:
        scanned = codec.scan_meta_events(raw.to_xdr_bytes())
        if scanned is not None and scanned[0] == 4:
            return MetaEvents(*scanned)
    meta = tx.meta
    ops = M.operation_metas(meta)
    op_events = [[compact_event(e) for e in M.operation_events(meta, i)] for i in range(len(ops))]
    tx_events = [(e.stage.value, compact_event(e.event)) for e in M.transaction_events(meta)]
    return MetaEvents(meta.v, tx_events, op_events)
