"""Arrow Flight over the dataset: `list_flights` names the tables, `do_get` streams the rows of
a ticket's ledger range and filters in ledger and event order (the same rows REST pages through).
Every call is authenticated by obsrvr_ray/serve/flight_auth.py's middleware (`caller`).

A ticket is JSON: {"table": "token_transfers", "start_ledger": 1, "end_ledger": 9,
"accounts": [...], "assets": [...], "event_types": [...], "min_amount": "1"}; ledgers and
transactions take only the ledger range. Its fields are checked by the functions that check
REST's query parameters (obsrvr_ray/query.py).

What a client sees of a failure: every handler answers through `_boundary`. A bad request gets a
FlightServerError with one line naming the field and the cause; anything unexpected is logged
here with its traceback and the call's context, and the client gets only an incident id to quote.
pyarrow would otherwise send any other Python exception with its traceback (file paths, source
lines) to the client.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import flight

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.query import MAX_PAGE, TableReader, TransferQuery, ledger_of, min_amount_of, strings_of
from obsrvr_ray.schema import TABLES, TRANSFERS_TABLE
from obsrvr_ray.serve.flight_auth import MIDDLEWARE_KEY, CallerMiddleware, caller
from obsrvr_ray.ttp.filters import EventFilter

_LEDGER_COLUMN = {"ledgers": "sequence", "transactions": "ledger_sequence"}
_RANGE_FIELDS = ("table", "start_ledger", "end_ledger")
_TRANSFER_FIELDS = (*_RANGE_FIELDS, "accounts", "assets", "event_types", "min_amount")
log = logging.getLogger("obsrvr_ray.serve.flight")
H = TypeVar("H", bound=Callable)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_ticket(raw: bytes) -> dict:
    """The ticket's JSON object; FlightServerError (one line) when it is not one."""
    try:
        ticket = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise flight.FlightServerError(_one_line(f"bad ticket: not JSON ({exc})")) from exc
    if not isinstance(ticket, dict):
        raise flight.FlightServerError(f"bad ticket: a JSON object is expected, with table one of {sorted(TABLES)}")
    return ticket


def ticket_query(ticket: dict) -> tuple[str, TransferQuery]:
    """The table a ticket reads and its query (the ledger range only, for ledgers and transactions);
    ConfigError names the field that is wrong, as REST does."""
    table = ticket.get("table", TRANSFERS_TABLE)
    if not isinstance(table, str) or table not in TABLES:
        raise ConfigError(f"table must be one of {sorted(TABLES)} (got {json.dumps(table)[:60]})")
    known = _TRANSFER_FIELDS if table == TRANSFERS_TABLE else _RANGE_FIELDS
    unknown = sorted(set(ticket) - set(known))
    if unknown:
        raise ConfigError(f"unknown ticket fields {', '.join(unknown)[:200]}: "
                          f"a {table} ticket takes {', '.join(known)}")
    return table, TransferQuery(
        start_ledger=ledger_of("start_ledger", ticket.get("start_ledger")),
        end_ledger=ledger_of("end_ledger", ticket.get("end_ledger")),
        filter=EventFilter.of(strings_of("event_types", ticket.get("event_types")),
                              strings_of("assets", ticket.get("assets")),
                              strings_of("accounts", ticket.get("accounts"))),
        min_amount=min_amount_of(ticket.get("min_amount")), limit=MAX_PAGE)


def _boundary(handler: H) -> H:
    """What the client of `handler` may see of its failures: Flight errors as raised (refusals, bad
    requests, one line each), anything else as an incident id, logged here with the context.
    Handlers return lists, not generators: a generator would fail after this returns, where
    pyarrow reports the traceback itself."""

    @functools.wraps(handler)
    def call(self: TransfersFlightServer, context: flight.ServerCallContext, *args: object) -> object:
        try:
            return handler(self, context, *args)
        except flight.FlightError:
            raise
        except Exception:
            incident = uuid.uuid4().hex[:12]
            middleware = context.get_middleware(MIDDLEWARE_KEY)
            who = middleware.principal.id if isinstance(middleware, CallerMiddleware) else "?"
            log.exception("Flight %s failed (incident %s, caller %s, peer %s, request %s)", handler.__name__,
                          incident, who, context.peer(), ", ".join(repr(arg)[:300] for arg in args))
            raise flight.FlightInternalError(f"internal error (incident {incident}); the server log has the details"
                                             ) from None

    return call  # type: ignore[return-value]


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

    @staticmethod
    def _table(descriptor: flight.FlightDescriptor) -> str:
        table = descriptor.path[0].decode(errors="replace") if descriptor.path else TRANSFERS_TABLE
        if table not in TABLES:
            raise flight.FlightServerError(f"no table {table[:60]!r}; the tables are {sorted(TABLES)}")
        return table

    @_boundary
    def list_flights(self, context: flight.ServerCallContext, criteria: bytes):
        caller(context)
        return [self._info(table) for table in TABLES]

    @_boundary
    def get_flight_info(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor):
        caller(context)
        return self._info(self._table(descriptor))

    @_boundary
    def get_schema(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor):
        # pyarrow 26 sends its traceback with any refusal raised here (its _get_schema, unlike the
        # other handlers' callbacks, does not translate FlightError); an unknown table is the only
        # refusal, the per-address limit aside, and get_flight_info refuses it cleanly.
        caller(context)
        return flight.SchemaResult(TABLES[self._table(descriptor)])

    @_boundary
    def list_actions(self, context: flight.ServerCallContext):
        caller(context)
        return []  # reads only: the follower is controlled through Ray Serve, not here

    @_boundary
    def do_action(self, context: flight.ServerCallContext, action: flight.Action):
        caller(context)
        raise flight.FlightServerError(f"unknown action {action.type[:60]!r}: this server offers no actions")

    @_boundary
    def do_put(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor,
               reader: flight.MetadataRecordBatchReader, writer: flight.FlightMetadataWriter):
        caller(context)
        raise flight.FlightServerError("do_put is not offered: this server only reads the dataset")

    @_boundary
    def do_exchange(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor,
                    reader: flight.MetadataRecordBatchReader, writer: flight.MetadataRecordBatchWriter):
        caller(context)
        raise flight.FlightServerError("do_exchange is not offered: this server only reads the dataset")

    def rows(self, ticket: dict) -> pa.Table:
        try:
            table, query = ticket_query(ticket)
        except ConfigError as exc:
            raise flight.FlightServerError(_one_line(f"bad ticket: {exc}")) from exc
        if table != TRANSFERS_TABLE:
            column = _LEDGER_COLUMN[table]
            expr = None
            if query.start_ledger is not None:
                expr = ds.field(column) >= query.start_ledger
            if query.end_ledger is not None:
                upper = ds.field(column) <= query.end_ledger
                expr = upper if expr is None else expr & upper
            rows = self.reader.read(table, expr)
            order = [(column, "ascending")] + ([("transaction_index", "ascending")] if table == "transactions" else [])
            return rows.take(pc.sort_indices(rows, sort_keys=order))
        recent = self.recent() if self.recent is not None else None
        parts, cursor = [], None
        while True:
            page = self.reader.transfers(TransferQuery(query.start_ledger, query.end_ledger, filter=query.filter,
                                                       min_amount=query.min_amount, cursor=cursor, limit=MAX_PAGE),
                                         recent)
            parts.append(page.rows)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return pa.concat_tables(parts)

    @_boundary
    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket):
        caller(context)
        if self.on_get is not None:
            self.on_get()
        return flight.RecordBatchStream(self.rows(parse_ticket(ticket.ticket)))
