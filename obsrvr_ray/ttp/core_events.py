"""Token transfers as core itself emitted them (CAP-67 unified events in TransactionMetaV4):
fee events at transaction level, SEP-41 events per operation."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray.errors import BugError
from obsrvr_ray.ledger.compact_events import meta_events
from obsrvr_ray.ledger.model import Ledger, LedgerTransaction
from obsrvr_ray.ttp.assets import NATIVE, sac_contract_strkey
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.contract_events import address, i128, parse_token_event, symbol
from obsrvr_ray.ttp.events import FEE, Event, LedgerEvents, MalformedEvent, Skipped, TxEvents
from obsrvr_ray.xdr.lazy import LazyXdr


def has_unified_events(ledger: Ledger) -> bool:
    return bool(ledger.transactions) and all(meta_version(tx) == 4 for tx in ledger.transactions)


def meta_version(tx: LedgerTransaction) -> int:
    """Read from the first bytes when the meta is still encoded: no need to decode it."""
    raw = tx.raw_meta
    if type(raw) is LazyXdr:
        if raw.scanned_events is not None:  # the compiled decoder scans v4 metas only
            return 4
        return int.from_bytes(raw.to_xdr_bytes()[:4], "big", signed=True)
    return raw.v


_CONTRACT = X.ContractEventType.CONTRACT.value
_I128 = X.SCValType.SCV_I128.value


def _fee_event(ctx: TxContext, event: tuple, native_sac: str) -> Event | None:
    contract_id, kind, body_v, topics, data = event
    if kind != _CONTRACT or contract_id is None or body_v != 0:
        raise MalformedEvent("transaction-level event is not a contract event")
    if not topics or symbol(topics[0]) != FEE:
        return None
    if len(topics) != 2:
        raise MalformedEvent(f"fee event with {len(topics)} topics")
    if data[0] != _I128:
        raise MalformedEvent("fee amount is not an i128")
    if contract_id != native_sac:
        raise MalformedEvent("fee event not emitted by the native asset contract")
    return Event(FEE, i128(data), NATIVE, native_sac, ctx.index, ctx.tx_hash, None, address(topics[1]))


def core_tx_events(ctx: TxContext, native_sac: str) -> TxEvents:
    """`native_sac`: the XLM contract of the network, which emits every fee event."""
    skipped = ctx.skipped
    out = TxEvents()
    events = meta_events(ctx.tx)
    seq = ctx.ledger.sequence
    for _stage, tx_event in events.tx_events:
        try:
            fee = _fee_event(ctx, tx_event, native_sac)
        except MalformedEvent as exc:
            skipped.append(Skipped(seq, ctx.tx_hash, None, f"fee event: {exc}", error=True))
            continue
        if fee is not None:
            out.fees.append(fee)
    if len(out.fees) not in (1, 2):
        skipped.append(Skipped(seq, ctx.tx_hash, None, f"{len(out.fees)} fee events (expected 1 or 2)", error=True))
    if not ctx.successful:
        return out
    for i, op_events in enumerate(events.op_events):
        for event in op_events:
            try:
                out.ops.append(parse_token_event(event, v4_layout=True, passphrase=ctx.passphrase,
                                                 tx_index=ctx.index, tx_hash=ctx.tx_hash, op_index=i + 1))
            except MalformedEvent as exc:
                skipped.append(Skipped(seq, ctx.tx_hash, i + 1, str(exc)))
            except Exception as exc:  # a bug, not the event's fault: raised, named by its operation
                raise BugError.at(f"ledger {seq} tx {ctx.tx_hash} operation {i + 1}", exc) from exc
    return out


def core_ledger_events(ledger: Ledger, passphrase: str) -> LedgerEvents:
    """Events read from TransactionMetaV4; every transaction must carry V4 meta."""
    result = LedgerEvents(ledger.sequence, protocol=ledger.protocol_version, source="core")
    native_sac = sac_contract_strkey(NATIVE, passphrase)
    for tx in ledger.transactions:
        ctx = TxContext(ledger, tx, passphrase)
        version = meta_version(tx)
        if version != 4:
            result.skipped.append(Skipped(ledger.sequence, ctx.tx_hash, None,
                                          f"TransactionMeta v{version} has no unified events", error=True))
            result.per_tx.append(TxEvents())
            continue
        try:
            result.per_tx.append(core_tx_events(ctx, native_sac))
        except BugError:
            raise
        except Exception as exc:  # a bug reading the fee events: named by its transaction
            raise BugError.at(f"ledger {ledger.sequence} tx {ctx.tx_hash}", exc) from exc
        result.skipped.extend(ctx.skipped)
    return result
