"""What a WebSocket subscriber asks for, and the frames it receives.

A subscribe message (JSON):
  {"action": "subscribe", "accounts": [...], "assets": [...], "event_types": [...],
   "min_amount": "1000000", "format": "json" | "arrow", "from_ledger": 123, "window": 16}
Frames: JSON text {"type": "events", "ledger": N, "events": [row, ...]} (each row as REST's
/v1/token-transfers gives it) or, for "arrow", one binary Arrow IPC stream per ledger: a schema
message then one record batch of the TOKEN_TRANSFERS schema, the ledger in the schema's metadata
("ledger"); read it with pyarrow.ipc.open_stream(frame).read_all(). Control messages
({"type": "subscribed" | "error" | "pong" | "closing", ...}) are always JSON.

A live ledger is encoded once per Api replica, not once per subscriber (`Frames`): its rows'
JSON once, then each subscriber's frame joins the rows it selects; identical subscriptions
share the very same frame, JSON or Arrow.

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
from collections import OrderedDict
from collections.abc import Callable
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

    @property
    def everything(self) -> bool:
        """No filter: every row of every ledger."""
        return not self.filter.active and self.min_amount is None

    def select(self, rows: pa.Table) -> pa.Table:
        rows = self.filter.apply(rows)
        if self.min_amount is not None and rows.num_rows:
            rows = rows.filter(pc.greater_equal(rows["amount_raw"].cast(_EXACT), pa.scalar(self.min_amount, _EXACT)))
        return rows

    def mask(self, rows: pa.Table) -> pa.ChunkedArray | pa.Array:
        """Which of `rows` the subscription takes (what `select` keeps)."""
        keep = self.filter.mask(rows)
        if self.min_amount is not None and rows.num_rows:
            keep = pc.and_(keep, pc.greater_equal(rows["amount_raw"].cast(_EXACT), pa.scalar(self.min_amount, _EXACT)))
        return pc.fill_null(keep, False)

    def describe(self) -> dict:
        f = self.filter
        return {"event_types": list(f.event_types), "assets": list(f.assets), "accounts": list(f.accounts),
                "min_amount": None if self.min_amount is None else str(self.min_amount), "format": self.format,
                "from_ledger": self.from_ledger, "window": self.window}


def _json_value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def json_rows(rows: pa.Table) -> list[str]:
    """Each row as the JSON object a frame's events list holds."""
    return [json.dumps({k: _json_value(v) for k, v in row.items()}, separators=(",", ":"))
            for row in rows.to_pylist()]


def _json_events(ledger: int, texts: list[str]) -> str:
    # What json.dumps({"type": "events", "ledger": ledger, "events": [...]}) writes, rows already encoded.
    return f'{{"type":"events","ledger":{int(ledger)},"events":[{",".join(texts)}]}}'


def json_frame(ledger: int, rows: pa.Table) -> str:
    return _json_events(ledger, json_rows(rows))


def arrow_frame(ledger: int, rows: pa.Table) -> bytes:
    rows = rows.replace_schema_metadata({"ledger": str(ledger)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return sink.getvalue().to_pybytes()


@dataclass
class _Encoded:
    rows: pa.Table
    texts: list[str] | None = None  # each row's JSON, once encoded
    frames: dict = field(default_factory=dict)  # (format, filter, min_amount) -> (frame or None, events)


class Frames:
    """Live ledgers' frames for every subscriber of one replica: a ledger's rows are encoded to
    JSON once (the first subscriber to need them), and each distinct selection's frame once;
    the same str or bytes object is queued to every subscriber that wants it. `encoded(format)`
    is called per encoding (a metric). Runs on one event loop: no lock."""

    def __init__(self, encoded: Callable[[str], None] = lambda _format: None, capacity: int = 32) -> None:
        self._encoded = encoded
        self.capacity = capacity  # ledgers kept (subscribers are within a few ledgers of each other)
        self._ledgers: OrderedDict[int, _Encoded] = OrderedDict()

    def frame(self, ledger: int, rows: pa.Table, subscription: Subscription) -> tuple[str | bytes | None, int]:
        """The frame of `ledger` for `subscription` and its number of events (None, 0: none selected)."""
        held = self._ledgers.get(ledger)
        if held is None or held.rows is not rows:  # a ledger published again (a follower restart): anew
            held = self._ledgers[ledger] = _Encoded(rows)
            while len(self._ledgers) > self.capacity:
                self._ledgers.popitem(last=False)
        key = (subscription.format, subscription.filter, subscription.min_amount)
        if key not in held.frames:
            held.frames[key] = self._encode(ledger, held, subscription)
        return held.frames[key]

    def _encode(self, ledger: int, held: _Encoded, subscription: Subscription) -> tuple[str | bytes | None, int]:
        rows = held.rows
        if subscription.format == "arrow":
            selected = rows if subscription.everything else subscription.select(rows)
            if not selected.num_rows:
                return None, 0
            self._encoded("arrow")
            return arrow_frame(ledger, selected), selected.num_rows
        if held.texts is None:
            held.texts = json_rows(rows)
            self._encoded("json")
        texts = held.texts
        if not subscription.everything and texts:
            texts = [texts[i] for i in pc.indices_nonzero(subscription.mask(rows)).to_pylist()]
        return (_json_events(ledger, texts), len(texts)) if texts else (None, 0)


def control(kind: str, **fields: object) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))
