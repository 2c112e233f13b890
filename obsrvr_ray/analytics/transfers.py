"""Volume and count per asset per hour and per day, counts per event type, largest transfers.

A backfill computes a small partial per chunk (per hour: counts and exact sums; per asset: the
chunk's largest transfers), commits it with the chunk, and merges all partials into the final
tables. Sums are exact: `amount_raw` (int64 or i128 as text) is summed as decimal256(76, 0),
which no sum of i128 amounts can overflow, and written as text (`volume_raw`), with a float
`volume` (raw * 1e-7, like `amount`) for convenience only.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from obsrvr_ray.schema import I64, TOKEN_TRANSFERS, TS

EXACT = pa.decimal256(76, 0)
STROOP = 1e-7
ASSET = ["contract_id", "asset", "asset_code", "asset_issuer"]  # contract_id identifies the token

# The partials' token and event columns are those of TOKEN_TRANSFERS, taken from it.
HOURLY_PARTIAL = pa.schema([("hour", TS), *(TOKEN_TRANSFERS.field(c) for c in [*ASSET, "event_topic"]),
                            ("events", I64), ("volume", EXACT)])
LARGEST_COLUMNS = [*ASSET, "amount_raw", "amount", "from", "to", "transaction_hash", "ledger_sequence",
                   "closed_at", "event_index"]
LARGEST_PARTIAL = pa.schema([*(TOKEN_TRANSFERS.field(c) for c in LARGEST_COLUMNS), ("rank", I64)])


def hourly_partial(transfers: pa.Table) -> pa.Table:
    """Events and exact volume per hour, token and event type."""
    keyed = pa.table(
        {
            "hour": pc.floor_temporal(transfers["closed_at"], unit="hour"),
            **{c: transfers[c] for c in [*ASSET, "event_topic"]},
            "amount": transfers["amount_raw"].cast(EXACT),
        }
    )
    return _regroup(keyed, "hour", count_column=None)


def _regroup(table: pa.Table, period: str, count_column: str | None) -> pa.Table:
    """Group by (period, token, event type): count rows (or sum an `events` column) and sum."""
    keys = [period, *ASSET, "event_topic"]
    value = "amount" if count_column is None else "volume"
    aggs = [(value, "sum"), (value, "count")] if count_column is None else [(value, "sum"), (count_column, "sum")]
    grouped = table.group_by(keys, use_threads=False).aggregate(aggs)
    events = grouped[f"{value}_count"] if count_column is None else grouped[f"{count_column}_sum"]
    out = pa.table({**{k: grouped[k] for k in keys}, "events": events, "volume": grouped[f"{value}_sum"]})
    order = pc.sort_indices(out, sort_keys=[(k, "ascending") for k in keys])
    return out.take(order)


def largest_partial(transfers: pa.Table, top: int) -> pa.Table:
    """The `top` largest `transfer` events of each token, largest first."""
    moves = transfers.filter(pc.equal(transfers["event_topic"], "transfer")).select(LARGEST_COLUMNS)
    return _top_per_token(moves, top)


def _top_per_token(moves: pa.Table, top: int) -> pa.Table:
    exact = moves["amount_raw"].cast(EXACT)
    keyed = moves.append_column("exact", exact)
    order = pc.sort_indices(
        keyed,
        sort_keys=[("contract_id", "ascending"), ("exact", "descending"), ("ledger_sequence", "ascending"),
                   ("event_index", "ascending")],
    )
    ranked = moves.take(order)
    runs = pc.run_end_encode(ranked["contract_id"].combine_chunks()) if ranked.num_rows else None
    keep: list[int] = []
    ranks: list[int] = []
    begin = 0
    for end in runs.run_ends.to_pylist() if runs is not None else []:
        taken = range(begin, min(end, begin + top))
        keep.extend(taken)
        ranks.extend(range(1, len(taken) + 1))
        begin = end
    return ranked.take(pa.array(keep, pa.int64())).append_column("rank", pa.array(ranks, pa.int64()))


def merge(hourly_partials: pa.Table, largest_partials: pa.Table, top: int) -> dict[str, pa.Table]:
    """The final analytics tables from every committed partial."""
    hourly = _regroup(hourly_partials, "hour", count_column="events")
    daily = _regroup(
        hourly.set_column(0, "date", pc.cast(hourly["hour"], pa.date32())), "date", count_column="events"
    )
    per_type = daily.group_by(["date", "event_topic"], use_threads=False).aggregate([("events", "sum")])
    per_type = per_type.rename_columns(["date", "event_topic", "events"])
    per_type = per_type.take(pc.sort_indices(per_type, sort_keys=[("date", "ascending"), ("event_topic", "ascending")]))
    largest = _top_per_token(largest_partials.drop_columns(["rank"]), top)
    return {
        "asset_volume_hourly": _with_text_volume(hourly),
        "asset_volume_daily": _with_text_volume(daily),
        "event_type_counts": per_type,
        "largest_transfers": largest,
    }


def _with_text_volume(table: pa.Table) -> pa.Table:
    """volume_raw: the exact sum as text (decimal256 is not readable everywhere, DuckDB stops at
    38 digits); volume: the same as a float, for convenience."""
    exact = table["volume"]
    table = table.drop_columns(["volume"])
    table = table.append_column("volume_raw", exact.cast(pa.string()))
    return table.append_column("volume", pc.multiply(exact.cast(pa.float64()), STROOP))
