"""Token transfers derived from operations, their results and the ledger-entry changes: the
view that does not rely on the events core emitted, so it works on every protocol."""

from __future__ import annotations

from collections.abc import Callable

from stellar_sdk import xdr as X

from obsrvr_ray.errors import BugError
from obsrvr_ray.ledger.compact_events import meta_events
from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.ttp import claimable_balances, clawback, liquidity_pools, offers, payments, revocation
from obsrvr_ray.ttp.assets import NATIVE
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.contract_events import parse_token_event
from obsrvr_ray.ttp.events import (
    BURN,
    MINT,
    TRANSFER,
    Event,
    LedgerEvents,
    MalformedEvent,
    Skipped,
    TransferError,
    TxEvents,
)
from obsrvr_ray.ttp.fees import fee_events
from obsrvr_ray.ttp.issuer import classic_event
from obsrvr_ray.ttp.reconcile import change_deltas, event_deltas

OT = X.OperationType
Rule = Callable[[TxContext, X.Operation, int, X.OperationResultTr], list[Event]]


def invoke_host_function(ctx: TxContext, _op: X.Operation, op_index: int, _r: X.OperationResultTr) -> list[Event]:
    """SEP-41 events the invocation emitted. Before CAP-67 a SAC reported a transfer involving
    the issuer as a transfer; it is really a mint or a burn, so the issuer rule is applied."""
    found = meta_events(ctx.tx)
    v4 = found.version == 4
    raw_events = found.op_events[op_index - 1] if op_index - 1 < len(found.op_events) else []
    events = []
    for raw in raw_events:
        try:
            event = parse_token_event(raw, v4_layout=v4, passphrase=ctx.passphrase, tx_index=ctx.index,
                                      tx_hash=ctx.tx_hash, op_index=op_index)
        except MalformedEvent as exc:
            ctx.skipped.append(Skipped(ctx.ledger.sequence, ctx.tx_hash, op_index, str(exc)))
            continue
        if not v4 and event.kind == TRANSFER and event.asset is not None:
            event = classic_event(event.asset, event.from_, event.to, event.amount, contract_id=event.contract_id,
                                  tx_index=ctx.index, tx_hash=ctx.tx_hash, op_index=op_index)
        events.append(event)
    return events


def _none(_ctx: TxContext, _op: X.Operation, _i: int, _r: X.OperationResultTr) -> list[Event]:
    return []


RULES: dict[OT, Rule] = {
    OT.CREATE_ACCOUNT: payments.create_account,
    OT.PAYMENT: payments.payment,
    OT.PATH_PAYMENT_STRICT_RECEIVE: payments.path_payment,
    OT.PATH_PAYMENT_STRICT_SEND: payments.path_payment,
    OT.ACCOUNT_MERGE: payments.account_merge,
    OT.INFLATION: payments.inflation,
    OT.MANAGE_SELL_OFFER: offers.manage_offer,
    OT.MANAGE_BUY_OFFER: offers.manage_offer,
    OT.CREATE_PASSIVE_SELL_OFFER: offers.manage_offer,
    OT.CREATE_CLAIMABLE_BALANCE: claimable_balances.create,
    OT.CLAIM_CLAIMABLE_BALANCE: claimable_balances.claim,
    OT.CLAWBACK_CLAIMABLE_BALANCE: claimable_balances.clawback,
    OT.CLAWBACK: clawback.clawback,
    OT.ALLOW_TRUST: revocation.revoke,
    OT.SET_TRUST_LINE_FLAGS: revocation.revoke,
    OT.LIQUIDITY_POOL_DEPOSIT: liquidity_pools.deposit,
    OT.LIQUIDITY_POOL_WITHDRAW: liquidity_pools.withdraw,
    OT.INVOKE_HOST_FUNCTION: invoke_host_function,
    # operations that move no value
    OT.SET_OPTIONS: _none,
    OT.CHANGE_TRUST: _none,
    OT.MANAGE_DATA: _none,
    OT.BUMP_SEQUENCE: _none,
    OT.BEGIN_SPONSORING_FUTURE_RESERVES: _none,
    OT.END_SPONSORING_FUTURE_RESERVES: _none,
    OT.REVOKE_SPONSORSHIP: _none,
    OT.EXTEND_FOOTPRINT_TTL: _none,
    OT.RESTORE_FOOTPRINT: _none,
}

def _legacy_xlm_correction(ctx: TxContext, op: X.Operation, op_index: int, events: list[Event]) -> list[Event]:
    """Before protocol 8 core could create or destroy XLM in some operations; the difference
    between the source account's XLM change and what the events explain is a mint or a burn."""
    source = ctx.op_source_account(op)
    key = (source, NATIVE.canonical)
    diff = change_deltas(ctx.op_changes(op_index - 1)).get(key, 0) - event_deltas(events).get(key, 0)
    if diff == 0:
        return events
    sac = ctx.sac(NATIVE)
    if diff > 0:
        return [Event(MINT, amount=diff, asset=NATIVE, contract_id=sac, to=source, **ctx.common(op_index)), *events]
    return [*events, Event(BURN, amount=-diff, asset=NATIVE, contract_id=sac, from_=source, **ctx.common(op_index))]


def derive_tx_events(ctx: TxContext) -> TxEvents:
    """The transaction's events, one rule per operation. Data that breaks a rule (TransferError,
    MalformedEvent, results that do not match the operations) is skipped as an error naming the
    operation; any other exception is a bug in the rule and raised as a BugError naming the
    ledger, transaction and operation (stellar/go's formatError)."""
    skipped = ctx.skipped
    out = TxEvents(fees=fee_events(ctx))
    if not ctx.successful:
        return out
    seq, results, operations = ctx.ledger.sequence, ctx.op_results, ctx.operations
    if len(results) != len(operations):
        skipped.append(Skipped(seq, ctx.tx_hash, None, f"{len(results)} operation results for "
                               f"{len(operations)} operations", error=True))
        return out
    for i, op in enumerate(operations):
        op_index, kind = i + 1, op.body.type
        rule = RULES.get(kind)
        if rule is None:
            skipped.append(Skipped(seq, ctx.tx_hash, op_index, f"no token-transfer rule for operation type {kind}",
                                   error=True))
            continue
        if results[i].tr is None:  # the operation did not run, yet the transaction succeeded
            skipped.append(Skipped(seq, ctx.tx_hash, op_index, f"{kind.name}: result {results[i].code.name} "
                                   "in a successful transaction", error=True))
            continue
        try:
            events = rule(ctx, op, op_index, results[i].tr)
            if ctx.protocol < 8:
                events = _legacy_xlm_correction(ctx, op, op_index, events)
        except (TransferError, MalformedEvent) as exc:
            skipped.append(Skipped(seq, ctx.tx_hash, op_index, f"{kind.name}: {type(exc).__name__}: {exc}",
                                   error=True))
            continue
        except Exception as exc:
            raise BugError.at(f"ledger {seq} tx {ctx.tx_hash} operation {op_index} ({kind.name})", exc) from exc
        out.ops.extend(events)
    return out


def derived_ledger_events(ledger: Ledger, passphrase: str, *, core_claim_order: bool = False) -> LedgerEvents:
    """`core_claim_order`: claim-atom pairs in core's order instead of stellar/go's (see offers)."""
    result = LedgerEvents(ledger.sequence, protocol=ledger.protocol_version, source="operations")
    for tx in ledger.transactions:
        ctx = TxContext(ledger, tx, passphrase, core_claim_order=core_claim_order)
        try:
            result.per_tx.append(derive_tx_events(ctx))
        except BugError:
            raise
        except Exception as exc:  # a bug outside the rules (fees, the context): named by its transaction
            raise BugError.at(f"ledger {ledger.sequence} tx {ctx.tx_hash}", exc) from exc
        result.skipped.extend(ctx.skipped)
    return result
