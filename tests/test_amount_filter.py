"""The amount filter of REST queries, WebSocket subscriptions and Flight tickets: exact over the
whole i128 range, and a clear error beyond it (not a crash when the first rows are filtered)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyarrow import flight

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.live.subscription import Subscription
from obsrvr_ray.query import AMOUNT_MAX, AMOUNT_MIN, TableReader, TransferQuery
from obsrvr_ray.schema import TOKEN_TRANSFERS
from obsrvr_ray.serve.flight import TransfersFlightServer


def transfers(amounts: list[int]) -> pa.Table:
    rows = [{name: None for name in TOKEN_TRANSFERS.names} | {"amount_raw": str(a), "ledger_sequence": 7,
                                                              "event_index": i, "event_topic": "transfer"}
            for i, a in enumerate(amounts)]
    return pa.Table.from_pylist(rows, schema=TOKEN_TRANSFERS)


AMOUNTS = [AMOUNT_MIN, -1, 0, 10**7, 2**63, AMOUNT_MAX]


@pytest.mark.parametrize("threshold", [AMOUNT_MIN, 0, 2**63, AMOUNT_MAX])
def test_thresholds_across_the_i128_range_compare_exactly(threshold):
    expected = [str(a) for a in AMOUNTS if a >= threshold]
    table = transfers(AMOUNTS)
    assert TransferQuery(min_amount=threshold).apply(table)["amount_raw"].to_pylist() == expected
    assert Subscription.parse({"min_amount": str(threshold)}).select(table)["amount_raw"].to_pylist() == expected


@pytest.mark.parametrize("value", [str(AMOUNT_MAX + 1), str(AMOUNT_MIN - 1), str(10**80), "1.5e3", "lots"])
def test_out_of_range_or_malformed_thresholds_are_refused(value):
    with pytest.raises(ConfigError, match="min_amount"):
        Subscription.parse({"min_amount": value})
    with pytest.raises(ConfigError, match="min_amount"):
        TransferQuery(min_amount=int(value) if value.lstrip("-").isdigit() else value)


def test_flight_ticket_with_an_out_of_range_threshold_is_a_bad_ticket(tmp_path):
    """The ticket's rows (what do_get streams once the caller is authenticated)."""
    server = TransfersFlightServer("grpc://127.0.0.1:0", TableReader(str(tmp_path)))
    try:
        with pytest.raises(flight.FlightServerError, match="bad ticket: min_amount must be within the i128 range"):
            server.rows({"min_amount": str(10**80)})
        assert server.rows({"min_amount": str(AMOUNT_MAX)}).num_rows == 0
    finally:
        server.shutdown()
