"""One entry point for a ledger's token transfers, whichever view supplies them."""

from __future__ import annotations

from obsrvr_ray.gcpause import gc_paused
from obsrvr_ray.ledger.model import Ledger
from obsrvr_ray.ttp.core_events import core_ledger_events, has_unified_events
from obsrvr_ray.ttp.derive import derived_ledger_events
from obsrvr_ray.ttp.events import LedgerEvents
from obsrvr_ray.ttp.rows import event_rows

EVENT_SOURCES = ("auto", "core", "operations")


def check_events_from(events_from: str) -> str:
    """`events_from` if it names one of EVENT_SOURCES; else a ValueError listing them."""
    if events_from not in EVENT_SOURCES:
        raise ValueError(f"events_from must be one of {EVENT_SOURCES}, got {events_from!r}")
    return events_from


def ledger_events(ledger: Ledger, passphrase: str, events_from: str = "auto") -> LedgerEvents:
    """'core': the unified events core emitted (TransactionMetaV4), what stellar-etl reads;
    'operations': derived from operations and results; 'auto': core's when every transaction
    has them, else derived."""
    if events_from == "core" or (events_from == "auto" and has_unified_events(ledger)):
        return core_ledger_events(ledger, passphrase)
    check_events_from(events_from)
    return derived_ledger_events(ledger, passphrase)


@gc_paused
def token_transfer_rows(ledger: Ledger, passphrase: str, events_from: str = "auto") -> tuple[list[dict], LedgerEvents]:
    events = ledger_events(ledger, passphrase, events_from)
    return event_rows(events.ordered(), ledger.sequence, ledger.closed_at), events
