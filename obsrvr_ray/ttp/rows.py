"""Events -> `token_transfers` rows with stellar-etl's `export_token_transfer` columns."""

from __future__ import annotations

import datetime as dt

from obsrvr_ray import strkey
from obsrvr_ray.ttp.events import Event

STROOP = 0.0000001


def muxed_columns(event: Event) -> tuple[str | None, str | None]:
    """(to_muxed, to_muxed_id). A memo text or hash has no id: stellar-etl writes id 0 for it.
    to_muxed is the M address of the G destination, '' when the destination is not an account."""
    info = event.to_muxed
    if info is None:
        return None, None
    mux_id = info.id if info.id is not None else 0
    to = event.to
    if to is None or not to.startswith("G"):
        return "", str(mux_id)
    return strkey.muxed(strkey.decode(to)[1], mux_id), str(mux_id)


_CUSTOM = ("", "", None, None)  # asset columns of a custom token (named by its contract)


def event_rows(events: list[Event], ledger_sequence: int, closed_at: dt.datetime) -> list[dict]:
    """One row per event, `event_index` its position in the ledger. Written as one loop over
    unpacked tuples: a ledger has hundreds of events and this runs for each."""
    base = ledger_sequence << 32
    rows = []
    for index, event in enumerate(events):
        kind, amount, asset, contract_id, tx_index, tx_hash, op_index, from_, to, muxed = event
        tx_id = base | (tx_index << 12)
        asset_name, asset_type, code, issuer = _CUSTOM if asset is None else asset.columns
        to_muxed, to_muxed_id = (None, None) if muxed is None else muxed_columns(event)
        rows.append({
            "transaction_hash": tx_hash,
            "transaction_id": tx_id,
            "operation_id": None if op_index is None else tx_id | op_index,
            "event_topic": kind,
            "from": from_,
            "to": to,
            "asset": asset_name,
            "asset_type": asset_type,
            "asset_code": code,
            "asset_issuer": issuer,
            "amount_raw": str(amount),
            "amount": float(amount) * STROOP,
            "contract_id": contract_id,
            "ledger_sequence": ledger_sequence,
            "closed_at": closed_at,
            "to_muxed": to_muxed,
            "to_muxed_id": to_muxed_id,
            "transaction_index": tx_index,
            "operation_index": op_index,
            "event_index": index,
        })
    return rows
