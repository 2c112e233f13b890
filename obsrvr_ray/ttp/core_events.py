"""Token transfers as core itself emitted them (CAP-67 unified events in TransactionMetaV4):
fee events at transaction level, SEP-41 events per operation."""

from __future__ import annotations

from stellar_sdk import xdr as X

from obsrvr_ray import strkey
from obsrvr_ray.ledger import meta as M
from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.ttp.assets import NATIVE
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.contract_events import address, i128, parse_token_event, symbol
from obsrvr_ray.ttp.events import FEE, Event, MalformedEvent
from obsrvr_ray.ttp.extraction import LedgerEvents, Skipped, TxEvents


def has_unified_events(ledger: Ledger) -> bool:
    return bool(ledger.transactions) and all(tx.meta.v == 4 for tx in ledger.transactions)


def _fee_event(ctx: TxContext, event: X.ContractEvent, native_sac: str) -> Event | None:
    if event.type != X.ContractEventType.CONTRACT or event.contract_id is None or event.body.v != 0:
        raise MalformedEvent("transaction-level event is not a contract event")
    topics = event.body.v0.topics
    if not topics or symbol(topics[0]) != FEE:
        return None
    if len(topics) != 2:
        raise MalformedEvent(f"fee event with {len(topics)} topics")
    if event.body.v0.data.type != X.SCValType.SCV_I128:
        raise MalformedEvent("fee amount is not an i128")
    if strkey.contract(event.contract_id.contract_id.hash) != native_sac:
        raise MalformedEvent("fee event not emitted by the native asset contract")
    return Event(FEE, amount=i128(event.body.v0.data), asset=NATIVE, contract_id=native_sac,
                 from_=address(topics[1]), **ctx.common(None))


def core_tx_events(ctx: TxContext) -> TxEvents:
    skipped = ctx.skipped
    out = TxEvents()
    meta = ctx.tx.meta
    native_sac = ctx.sac(NATIVE)
    seq = ctx.ledger.sequence
    for tx_event in M.transaction_events(meta):
        try:
            fee = _fee_event(ctx, tx_event.event, native_sac)
        except MalformedEvent as exc:
            skipped.append(Skipped(seq, ctx.tx_hash, None, f"fee event: {exc}", error=True))
            continue
        if fee is not None:
            out.fees.append(fee)
    if len(out.fees) not in (1, 2):
        skipped.append(Skipped(seq, ctx.tx_hash, None, f"{len(out.fees)} fee events (expected 1 or 2)", error=True))
    if not ctx.successful:
        return out
    for i in range(len(M.operation_metas(meta))):
        for event in M.operation_events(meta, i):
            try:
                out.ops.append(parse_token_event(event, v4_layout=True, passphrase=ctx.passphrase,
                                                 tx_index=ctx.index, tx_hash=ctx.tx_hash, op_index=i + 1))
            except MalformedEvent as exc:
                skipped.append(Skipped(seq, ctx.tx_hash, i + 1, str(exc)))
    return out


def core_ledger_events(ledger: Ledger, passphrase: str) -> LedgerEvents:
    """Events read from TransactionMetaV4; every transaction must carry V4 meta."""
    result = LedgerEvents(ledger.sequence, protocol=ledger.protocol_version, source="core")
    for tx in ledger.transactions:
        ctx = TxContext(ledger, tx, passphrase)
        if tx.meta.v != 4:
            result.skipped.append(Skipped(ledger.sequence, ctx.tx_hash, None,
                                          f"TransactionMeta v{tx.meta.v} has no unified events", error=True))
            result.per_tx.append(TxEvents())
            continue
        result.per_tx.append(core_tx_events(ctx))
        result.skipped.extend(ctx.skipped)
    return result
