"""Arrow Flight over the dataset: `list_flights` names the tables, `do_get` streams the rows of
a ticket's ledger range and filters in ledger and event order (the same rows REST pages through).
Every call is authenticated by obsrvr_ray/serve/flight_auth.py's middleware (`caller`).

A ticket is JSON: {"table": "token_transfers", "start_ledger": 1, "end_ledger": 9,
"accounts": [...], "assets": [...], "event_types": [...], "min_amount": "1"}; ledgers and
transactions take only the ledger range.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.flight as flight

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.query import MAX_PAGE, TableReader, TransferQuery, min_amount_of
from obsrvr_ray.schema import TABLES
from obsrvr_ray.serve.flight_auth import caller
from obsrvr_ray.ttp.filters import EventFilter

_LEDGER_COLUMN = {"ledgers": "sequence", "transactions": "ledger_sequence"}


def parse_ticket(raw: bytes) -> dict:
    try:
        ticket = json.loads(raw)
    except ValueError as exc:
        raise flight.FlightServerError(f"ticket is not JSON: {exc}") from exc
    if not isinstance(ticket, dict) or ticket.get("table", "token_transfers") not in TABLES:
        raise flight.FlightServerError(f"ticket must name a table: one of {sorted(TABLES)}")
    return ticket


class TransfersFlightServer(flight.FlightServerBase):
    def __init__(self, location: str, reader: TableReader, recent: Callable[[], pa.Table] | None = None,
                 on_get: Callable[[], None] | None = None, **kwargs: object) -> None:
        super().__init__(location, **kwargs)
        self.reader = reader
        self.recent = recent
        self.on_get = on_get
        self._location = location

    def _info(self, table: str) -> flight.FlightInfo:
        descriptor = flight.FlightDescriptor.for_path(table)
        ticket = flight.Ticket(json.dumps({"table": table}).encode())
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(TABLES[table], descriptor, [endpoint], -1, -1)

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes):
        caller(context)
        for table in TABLES:
            yield self._info(table)

    def get_flight_info(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor):
        caller(context)
        table = descriptor.path[0].decode() if descriptor.path else "token_transfers"
        if table not in TABLES:
            raise flight.FlightServerError(f"no table {table!r}")
        return self._info(table)

    def rows(self, ticket: dict) -> pa.Table:
        table = ticket.get("table", "token_transfers")
        start, end = ticket.get("start_ledger"), ticket.get("end_ledger")
        if table != "token_transfers":
            column = _LEDGER_COLUMN[table]
            expr = None
            if start is not None:
                expr = ds.field(column) >= int(start)
            if end is not None:
                upper = ds.field(column) <= int(end)
                expr = upper if expr is None else expr & upper
            rows = self.reader.read(table, expr)
            order = [(column, "ascending")] + ([("transaction_index", "ascending")] if table == "transactions" else [])
            return rows.take(pc.sort_indices(rows, sort_keys=order))
        try:
            base = TransferQuery(start_ledger=start, end_ledger=end,
                                 filter=EventFilter.of(ticket.get("event_types") or [], ticket.get("assets") or [],
                                                       ticket.get("accounts") or []),
                                 min_amount=min_amount_of(ticket.get("min_amount")),
                                 limit=MAX_PAGE)
        except (ConfigError, ValueError) as exc:
            raise flight.FlightServerError(f"bad ticket: {exc}") from exc
        recent = self.recent() if self.recent is not None else None
        parts, cursor = [], None
        while True:
            page = self.reader.transfers(TransferQuery(base.start_ledger, base.end_ledger, filter=base.filter,
                                                       min_amount=base.min_amount, cursor=cursor, limit=MAX_PAGE),
                                         recent)
            parts.append(page.rows)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return pa.concat_tables(parts)

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket):
        caller(context)
        if self.on_get is not None:
            self.on_get()
        return flight.RecordBatchStream(self.rows(parse_ticket(ticket.ticket)))
