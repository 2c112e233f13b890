"""What a WebSocket subscriber asks for, and the frames it receives.

A subscribe message (JSON):
  {"action": "subscribe", "accounts": [...], "assets": [...], "event_types": [...],
   "min_amount": "1000000", "format": "json" | "arrow", "from_ledger": 123, "window": 16}
Frames: JSON text {"type": "events", "ledger": N, "events": [row, ...]} or, for "arrow", one
binary Arrow IPC stream per ledger (its schema carries the ledger in metadata). Control
messages ({"type": "subscribed" | "error" | "pong" | "closing", ...}) are always JSON.

The first message must be the subscribe; a field it does not know is refused (with an error
frame, then close code 1008), so a misspelt filter never widens the stream.
Then, from the client: {"action": "ping"} (answered with a pong; any message resets the idle
timeout) and, with a `window`, {"action": "ack", "ledger": N} once it has read the frames up to
ledger N. With a window the server sends at most that many event frames beyond the last ack,
and a client that stops acknowledging fills its queue and is dropped as a slow consumer. Any
other message gets an error frame naming what is expected, and the subscription goes on.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.query import ledger_of, min_amount_of, strings_of
from obsrvr_ray.ttp.filters import EventFilter

FORMATS = ("json", "arrow")
FIELDS = ("action", "event_types", "assets", "accounts", "min_amount", "format", "from_ledger", "window")
MAX_WINDOW = 10_000
_EXACT = pa.decimal256(76, 0)


@dataclass(frozen=True)
class Subscription:
    filter: EventFilter = field(default_factory=EventFilter)
    min_amount: int | None = None
    format: str = "json"
    from_ledger: int | None = None  # replay from this ledger, then live
    window: int | None = None  # event frames sent beyond the client's last ack (flow control), or None

    @classmethod
    def parse(cls, message: dict) -> Subscription:
        """Validated by the functions that check REST's query parameters and Flight's tickets;
        ConfigError names the field that is wrong."""
        unknown = sorted(set(message) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown subscribe fields {', '.join(unknown)[:200]}: it takes {', '.join(FIELDS)}")
        fmt = message.get("format", "json")
        if fmt not in FORMATS:
            raise ConfigError(f"format must be one of {FORMATS}")
        min_amount = min_amount_of(message.get("min_amount"))
        from_ledger = ledger_of("from_ledger", message.get("from_ledger"))
        window = message.get("window")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                                   or not 1 <= window <= MAX_WINDOW):
            raise ConfigError(f"window must be an integer from 1 to {MAX_WINDOW} (frames sent before an ack)")
        lists = (strings_of(key, message.get(key)) for key in ("event_types", "assets", "accounts"))
        return cls(EventFilter.of(*lists), min_amount, fmt, from_ledger, window)

    def select(self, rows: pa.Table) -> pa.Table:
        rows = self.filter.apply(rows)
        if self.min_amount is not None and rows.num_rows:
            rows = rows.filter(pc.greater_equal(rows["amount_raw"].cast(_EXACT), pa.scalar(self.min_amount, _EXACT)))
        return rows

    def describe(self) -> dict:
        f = self.filter
        return {"event_types": list(f.event_types), "assets": list(f.assets), "accounts": list(f.accounts),
                "min_amount": None if self.min_amount is None else str(self.min_amount), "format": self.format,
                "from_ledger": self.from_ledger, "window": self.window}


def _json_value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def json_frame(ledger: int, rows: pa.Table) -> str:
    events = [{k: _json_value(v) for k, v in row.items()} for row in rows.to_pylist()]
    return json.dumps({"type": "events", "ledger": ledger, "events": events}, separators=(",", ":"))


def arrow_frame(ledger: int, rows: pa.Table) -> bytes:
    rows = rows.replace_schema_metadata({"ledger": str(ledger)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return sink.getvalue().to_pybytes()


def control(kind: str, **fields: object) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))
