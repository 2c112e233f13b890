"""Events -> `token_transfers` rows with stellar-etl's `export_token_transfer` columns."""

from __future__ import annotations

import datetime as dt

from obsrvr_ray import strkey
from obsrvr_ray.ttp.assets import Asset
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


_CUSTOM = ("", "", None, None)


def _asset_columns(asset: Asset | None) -> tuple[str, str, str | None, str | None]:
    return _CUSTOM if asset is None else (asset.etl_name, asset.type_name, asset.code, asset.issuer)


def event_row(event: Event, ledger_sequence: int, closed_at: dt.datetime, event_index: int) -> dict:
    to_muxed, to_muxed_id = muxed_columns(event) if event.to_muxed is not None else (None, None)
    base = ledger_sequence << 32
    tx_id = base | (event.tx_index << 12)
    asset, asset_type, code, issuer = _asset_columns(event.asset)
    return {
        "transaction_hash": event.tx_hash,
        "transaction_id": tx_id,
        "operation_id": None if event.op_index is None else tx_id | event.op_index,
        "event_topic": event.kind,
        "from": event.from_,
        "to": event.to,
        "asset": asset,
        "asset_type": asset_type,
        "asset_code": code,
        "asset_issuer": issuer,
        "amount_raw": str(event.amount),
        "amount": float(event.amount) * STROOP,
        "contract_id": event.contract_id,
        "ledger_sequence": ledger_sequence,
        "closed_at": closed_at,
        "to_muxed": to_muxed,
        "to_muxed_id": to_muxed_id,
        "transaction_index": event.tx_index,
        "operation_index": event.op_index,
        "event_index": event_index,
    }


def event_rows(events: list[Event], ledger_sequence: int, closed_at: dt.datetime) -> list[dict]:
    return [event_row(e, ledger_sequence, closed_at, i) for i, e in enumerate(events)]
