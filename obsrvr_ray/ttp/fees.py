"""Fee events: the fee payer (a fee bump's outer source, else the transaction source) pays the
fee charged; a Soroban transaction is charged its full declared fee up front and refunded
after, the refund being a negative fee event. Failed transactions pay fees too."""

from __future__ import annotations

from obsrvr_ray.ledger import envelope as E
from obsrvr_ray.ledger import meta as M
from obsrvr_ray.ledger.accounts import base_account
from obsrvr_ray.ttp.assets import NATIVE
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.events import FEE, Event


def fee_events(ctx: TxContext) -> list[Event]:
    """[charged] or [charged, -refund], from the result and the fee payer's balance changes."""
    payer = base_account(E.fee_source(ctx.tx.envelope))
    common = dict(asset=NATIVE, contract_id=ctx.sac(NATIVE), from_=payer, **ctx.common(None))
    if not ctx.is_soroban:
        return [Event(FEE, amount=ctx.tx.result.result.fee_charged.int64, **common)]
    start, end = M.account_balances(ctx.tx.fee_changes.ledger_entry_changes, payer)
    events = [Event(FEE, amount=start - end, **common)]
    before, after = M.account_balances(M.refund_changes(ctx.tx), payer)
    refund = after - before
    if refund > 0:
        events.append(Event(FEE, amount=-refund, **common))
    return events
