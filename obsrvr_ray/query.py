"""Reading an output's tables (what the backfill and the live follower commit): token transfers
by filters with keyset pagination, ledger and transaction lookups, and the backfill's
aggregations over any time window.

Only committed Delta snapshots are read. Rows not yet committed (the live follower's newest
ledgers) come from `recent`, which the caller supplies, and are merged above the snapshot's last
ledger; rows the caller already holds in memory for the query's first ledgers (`Held`: the live
app's window of recent ledgers) stand in for those ledgers' files.

A reader keeps its tables open: the log's file list and statistics are cached per table version
(brought up to date from the log's tail), and the decoded contents of the files it read last
(Delta files never change) up to `cache_bytes`, so a repeated query does not open files again.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import fs as pa_fs

from obsrvr_ray.analytics.transfers import hourly_partial, largest_partial, merge
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.objectstore import S3Options
from obsrvr_ray.ranges import FIRST_LEDGER, LAST_LEDGER, ledger_sequence
from obsrvr_ray.schema import LEDGERS_TABLE, TABLES, TOKEN_TRANSFERS, TRANSACTIONS_TABLE, TRANSFERS_TABLE
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet
from obsrvr_ray.ttp.filters import EventFilter

MAX_PAGE = 1000
SPLIT_FILES_OVER = 8 << 20  # bytes: a file this large is read by row group (compaction makes them)
CACHE_BYTES = 64 << 20  # decoded file contents a reader keeps
_LEDGER_COLUMN = {LEDGERS_TABLE: "sequence", TRANSACTIONS_TABLE: "ledger_sequence", TRANSFERS_TABLE: "ledger_sequence"}
ORDER = [("ledger_sequence", "ascending"), ("event_index", "ascending")]
MAX_EVENT_INDEX = 2**63 - 1  # event_index is int64
AMOUNT_MIN, AMOUNT_MAX = -(2**127), 2**127 - 1  # i128: the widest amount an event carries


def encode_cursor(ledger: int, event_index: int) -> str:
    return base64.urlsafe_b64encode(f"{ledger}:{event_index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The position a cursor names; ConfigError for anything encode_cursor cannot have made (numbers
    beyond the columns' types included: they would overflow the comparisons pushed down to Arrow)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ledger, index = (int(part) for part in text.split(":"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid cursor {_shown(cursor)}") from exc
    if not (0 <= ledger <= LAST_LEDGER and 0 <= index <= MAX_EVENT_INDEX):
        raise ConfigError(f"invalid cursor {_shown(cursor)}: its position is out of range")
    return ledger, index


_SHOWN_MAX = 60  # characters of a request's value quoted in an error


def _shown(value: object) -> str:
    """A request's value quoted in an error message, cut short (a message stays one readable line)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX - 3] + "..."


# ---- request parameters: one validation for REST queries, Flight tickets and WebSocket subscriptions.
# Each refuses a value of the wrong type or range with a one-line ConfigError naming the field.
def ledger_of(name: str, value: object) -> int | None:
    """A ledger sequence (a JSON integer or its decimal text), or None when not given; the bounds
    are every command's (ranges.ledger_sequence), the message the request's own."""
    if value is None:
        return None
    try:
        return ledger_sequence(value)
    except ConfigError:
        raise ConfigError(f"{name} must be a ledger sequence, an integer from {FIRST_LEDGER} to {LAST_LEDGER} "
                          f"(got {_shown(value)})") from None


def strings_of(name: str, value: object) -> list[str]:
    """A list of strings (or one string); as in REST's query parameters, an item may hold several
    values separated by commas."""
    items = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{name} must be a list of strings (got {_shown(value)})")
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


def min_amount_of(value: object) -> int | None:
    """An amount filter in base units, from a request; ConfigError unless an integer in the i128
    range (beyond it the exact comparison, in decimal256(76), cannot be made)."""
    if value is None:
        return None
    try:
        if isinstance(value, bool | float):  # int() would take true as 1 and cut 1.5 to 1
            raise TypeError(value)
        amount = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError("min_amount must be an integer (base units, e.g. stroops)") from exc
    if not AMOUNT_MIN <= amount <= AMOUNT_MAX:
        raise ConfigError("min_amount must be within the i128 range (-2**127 to 2**127-1)")
    return amount


@dataclass(frozen=True)
class TransferQuery:
    start_ledger: int | None = None
    end_ledger: int | None = None
    since: dt.datetime | None = None  # closed_at >= since
    until: dt.datetime | None = None  # closed_at < until
    filter: EventFilter = field(default_factory=EventFilter)
    min_amount: int | None = None  # in the token's base unit (stroops for classic assets)
    cursor: str | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ConfigError(f"limit must be between 1 and {MAX_PAGE}")
        min_amount_of(self.min_amount)
        if self.cursor is not None:
            decode_cursor(self.cursor)  # a bad cursor is the request's fault, refused before any read

    def expression(self) -> ds.Expression | None:
        """The part of the filter pyarrow can push down to files and row groups."""
        parts = []
        if self.start_ledger is not None:
            parts.append(ds.field("ledger_sequence") >= self.start_ledger)
        if self.end_ledger is not None:
            parts.append(ds.field("ledger_sequence") <= self.end_ledger)
        if self.since is not None:
            parts.append(ds.field("closed_at") >= pa.scalar(self.since, TOKEN_TRANSFERS.field("closed_at").type))
        if self.until is not None:
            parts.append(ds.field("closed_at") < pa.scalar(self.until, TOKEN_TRANSFERS.field("closed_at").type))
        if self.filter.event_types:
            parts.append(ds.field("event_topic").isin(list(self.filter.event_types)))
        if self.cursor is not None:
            ledger, index = decode_cursor(self.cursor)
            parts.append((ds.field("ledger_sequence") > ledger)
                         | ((ds.field("ledger_sequence") == ledger) & (ds.field("event_index") > index)))
        out = None
        for part in parts:
            out = part if out is None else out & part
        return out

    def apply(self, table: pa.Table) -> pa.Table:
        """The whole filter on rows already in memory (recent rows, or after the push-down)."""
        expr = self.expression()
        if expr is not None and table.num_rows:
            table = table.filter(expr)
        table = self.filter.apply(table)
        if self.min_amount is not None and table.num_rows:
            exact = table["amount_raw"].cast(pa.decimal256(76, 0))
            table = table.filter(pc.greater_equal(exact, pa.scalar(self.min_amount, pa.decimal256(76, 0))))
        return table


@dataclass
class ResultPage:
    rows: pa.Table
    next_cursor: str | None


@dataclass(frozen=True)
class Held:
    """A query's rows from memory (already filtered) for every ledger from its first through
    `through`: those ledgers' files are not read."""

    rows: pa.Table
    through: int

    def page(self, query: TransferQuery) -> ResultPage | None:
        """The query's page when these rows settle it (they hold more than a page, or reach its last
        ledger), else None: only then is no file needed."""
        if self.rows.num_rows > query.limit or (query.end_ledger is not None and self.through >= query.end_ledger):
            return _page(self.rows.cast(TOKEN_TRANSFERS), query.limit)
        return None


Pieces = tuple[ds.Dataset | None, list[tuple[tuple[int, int], ds.Fragment]]]  # a snapshot's, with their ledger ranges
Recent = pa.Table | Callable[[int | None], pa.Table]  # rows past the snapshot, or a function of its last ledger


def _page(table: pa.Table, limit: int) -> ResultPage:
    """The first `limit` rows in ledger and event order, and the cursor after them if more follow.
    Only the page's rows are gathered (the parts read may hold many more), and not even copied
    when they are in order already, as files and the window keep them."""
    order = pc.sort_indices(table, sort_keys=ORDER).slice(0, limit)
    in_order = pc.all(pc.equal(order, pa.array(range(len(order)), pa.uint64()))).as_py() is not False
    page = table.slice(0, limit) if in_order else table.take(order)
    next_cursor = None
    if table.num_rows > limit:
        last_row = page.slice(page.num_rows - 1, 1).to_pylist()[0]
        next_cursor = encode_cursor(last_row["ledger_sequence"], last_row["event_index"])
    return ResultPage(page, next_cursor)


class TableReader:
    """One output's tables, read at their latest committed snapshot (refreshed from the log's
    tail on every query, so new commits show up) or `as_of` a version or time. Files are pruned
    by partition values and by the min/max statistics the log keeps for each file."""

    def __init__(self, root: str, s3: S3Options | None = None, as_of: int | str | dt.datetime | None = None,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.root = root.rstrip("/")
        self.tables = TableSet(TableLocation(self.root, s3 or S3Options()))
        self.as_of = as_of
        self.cache_bytes = cache_bytes
        self._pieces: dict[str, tuple[int, tuple]] = {}  # per table: the pieces of its last snapshot read
        self._split: dict[str, list] = {}  # a large file's row groups, by path (Delta files never change)
        self._group_ids: dict[int, int] = {}  # id() of a row group's fragment (held in _split): its group
        self._decoded: OrderedDict[tuple, pa.Table] = OrderedDict()  # a piece's rows, normalized (LRU)
        self._decoded_bytes = 0
        self._lock = threading.Lock()  # requests run in threads: the cache is shared
        self._filesystems: dict[str, pa_fs.FileSystem] = {}
        self._on_local_disk = self.tables.location.on_local_disk()  # a stat cannot stall on it
        self.files_read = 0  # pieces decoded from files (not from the cache): a statistic for tests and benchmarks

    def at(self, as_of: int | str | dt.datetime | None) -> TableReader:
        """The same tables read as of a version or time."""
        return TableReader(self.root, self.tables.location.s3, as_of, cache_bytes=0)

    def piece(self, table: str, data: ds.Dataset, fragment: ds.Fragment, decode: bool = True) -> pa.Table | None:
        """A piece's rows (the table's own columns), decoded once and kept while the cache has
        room: a file's contents never change, so there is nothing to invalidate. None when not
        kept and not to be decoded (`decode` False)."""
        key = (table, fragment.path, self._group_ids.get(id(fragment)))
        with self._lock:
            found = self._decoded.get(key)
            if found is not None:
                self._decoded.move_to_end(key)
                return found
        if not decode:
            return None
        rows = self._normalize(fragment.to_table(schema=data.schema), table)
        with self._lock:
            self.files_read += 1
            if rows.nbytes <= self.cache_bytes // 4 and key not in self._decoded:
                self._decoded[key] = rows
                self._decoded_bytes += rows.nbytes
                while self._decoded_bytes > self.cache_bytes:
                    self._decoded_bytes -= self._decoded.popitem(last=False)[1].nbytes
        return rows

    def dataset(self, table: str) -> ds.Dataset | None:
        return self.tables.dataset(table, self.as_of)

    @staticmethod
    def _normalize(out: pa.Table, table: str) -> pa.Table:
        """The table's own columns, in order (partition-only columns such as date are dropped)."""
        schema = TABLES[table]
        return out.select(schema.names).cast(schema)

    def read(self, table: str, expression: ds.Expression | None = None) -> pa.Table:
        data = self.dataset(table)
        if data is None:
            return TABLES[table].empty_table()
        return self._normalize(data.to_table(filter=expression), table)

    def chunks(self, table: str, read: bool = True) -> Pieces | None:
        """The table's pieces with the ledger range each holds, in ledger order: each small file
        whole, each large one (a compacted partition) by row group. Built from the log (paths,
        partition values, min/max statistics), not from delta-rs' pyarrow dataset, whose filter
        expressions over every column's statistics cost about 0.5 ms a file; a large file's row
        groups are read from its footer once (files never change). `read` False: None unless the
        pieces are known and the table is on local disk (then the check that they are the latest
        is one stat, not a request to a store or a network mount)."""
        cached = self._pieces.get(table)
        if not read and (cached is None or not self._on_local_disk):
            return None
        if cached is not None and self._latest(table, cached[0]):
            return cached[1]
        if not read:
            return None
        snapshot = self.tables.table(table, self.as_of)
        if snapshot is None:
            return None, []
        version = snapshot.version()
        if cached is not None and cached[0] == version:
            return cached[1]
        column = _LEDGER_COLUMN[table]
        actions = pa.table(snapshot.get_add_actions(flatten=True))
        data = self.tables.snapshot_dataset(table, snapshot, actions)
        pieces = []
        stats = actions.select(["size_bytes", f"min.{column}", f"max.{column}"]).to_pylist()
        for row, fragment in zip(stats, data.get_fragments(), strict=True):  # both in the log's order
            if row[f"min.{column}"] is None:
                continue  # no rows
            if row["size_bytes"] < SPLIT_FILES_OVER:
                pieces.append(((row[f"min.{column}"], row[f"max.{column}"]), fragment))
            else:
                pieces.extend(self._row_groups(fragment, column))
        result = data, sorted(pieces, key=lambda item: item[0])
        self._pieces[table] = (version, result)
        return result

    def _latest(self, table: str, version: int) -> bool:
        """`version` is still the table's latest: the log has no commit after it. One file probe
        (about 20 µs on local disk, one HEAD on S3) instead of delta-rs bringing the table up to
        date (about 3 ms here, listing the log's tail) on every request."""
        if self.as_of is not None:
            return True  # a snapshot as of a version or time never changes
        if table not in self._filesystems:
            self._filesystems[table] = self.tables.location.arrow_filesystem(table)
        info = self._filesystems[table].get_file_info(f"_delta_log/{version + 1:020d}.json")
        return info.type == pa_fs.FileType.NotFound

    def _row_groups(self, fragment: ds.Fragment, column: str) -> list[tuple[tuple[int, int], ds.Fragment]]:
        path = fragment.path
        if path not in self._split:
            fragment.ensure_complete_metadata()
            self._split[path] = []
            for group in fragment.row_groups:
                if group.num_rows:
                    subset = fragment.subset(row_group_ids=[group.id])
                    self._group_ids[id(subset)] = group.id
                    self._split[path].append(((group.statistics[column]["min"], group.statistics[column]["max"]),
                                              subset))
        return self._split[path]

    def last_ledger(self) -> int | None:
        """The last ledger the committed snapshot holds (its chunks, or its transfers' statistics)."""
        _, chunks = self.chunks(TRANSFERS_TABLE)
        committed = self.tables.committed() if self.as_of is None else {}
        return max([end for (_, end), _ in chunks] + [end for _, end in committed], default=None)

    def transfers(self, query: TransferQuery, recent: Recent | None = None, held: Held | None = None,
                  read: bool = True) -> ResultPage | None:
        """A page in ledger order, reading chunks in ledger order and stopping once the page is
        full: the cost follows the page size, not the dataset's. `held`: the query's rows from
        memory through some ledger (their files are not read; when they fill the page or reach
        the query's end, no file is). `recent`: rows past the snapshot's last ledger, or a
        function of that ledger giving them (called only when the page needs them).

        `read` False: the page only if it needs no file read, no store request and no `recent`
        rows (what a caller on an event loop may wait for), else None."""
        parts: list[pa.Table] = []
        if held is not None:
            settled = held.page(query)
            if settled is not None:
                return settled
            parts.append(held.rows.cast(TOKEN_TRANSFERS))
        known = self.chunks(TRANSFERS_TABLE, read)
        if known is None:
            return None
        data, chunks = known
        committed = self._committed_parts(query, data, chunks, held, read)
        if committed is None:
            return None
        parts += committed
        last = max((end for (_, end), _ in chunks), default=None)
        if held is not None:
            last = held.through if last is None else max(last, held.through)
        past = last is None or query.end_ledger is None or query.end_ledger > last  # it reaches past the snapshot
        if sum(p.num_rows for p in parts) <= query.limit and recent is not None and past:  # the newest ledgers
            if not read:
                return None
            fresh = recent(last) if callable(recent) else recent
            if fresh.num_rows:
                fresh = fresh if last is None else fresh.filter(pc.greater(fresh["ledger_sequence"], last))
                parts.append(query.apply(fresh.cast(TOKEN_TRANSFERS)))
        return _page(pa.concat_tables(parts) if parts else TOKEN_TRANSFERS.empty_table(), query.limit)

    def _committed_parts(self, query: TransferQuery, data: ds.Dataset | None, chunks: list, held: Held | None,
                         read: bool) -> list[pa.Table] | None:
        """The query's rows from the snapshot's pieces past the held ledgers, in ledger order, until
        more than a page is found (with the held rows); None when a piece is not decoded and not
        to be read."""
        low = query.start_ledger or 0
        if query.cursor is not None:
            low = max(low, decode_cursor(query.cursor)[0])
        high = query.end_ledger if query.end_ledger is not None else float("inf")
        rows = 0 if held is None else held.rows.num_rows
        if held is not None:
            low = max(low, held.through + 1)
        parts: list[pa.Table] = []
        stop_after: int | None = None  # set once the page is full: the last ledger still to read
        for (start, end), fragment in chunks:
            if end < low or start > high:
                continue
            if stop_after is not None and start > stop_after:
                break
            piece = self.piece(TRANSFERS_TABLE, data, fragment, read)
            if piece is None:
                return None
            part = query.apply(piece)
            if held is not None and start <= held.through:  # a file reaching into the held ledgers
                part = part.filter(pc.greater(part["ledger_sequence"], held.through))
            parts.append(part)
            rows += part.num_rows
            if stop_after is None and rows > query.limit:
                stop_after = end  # chunks starting later cannot come before these rows
        return parts

    def ledger(self, sequence: int) -> dict | None:
        """Reads only the files whose ledger range (in their names) holds the sequence."""
        data, chunks = self.chunks("ledgers")
        for (start, end), fragment in chunks:
            if start <= sequence <= end:
                rows = self.piece("ledgers", data, fragment)
                found = rows.filter(pc.equal(rows["sequence"], sequence))
                if found.num_rows:
                    return found.to_pylist()[0]
        return None

    def transaction(self, tx_hash: str) -> dict | None:
        rows = self.read("transactions", ds.field("transaction_hash") == tx_hash).to_pylist()
        return rows[0] if rows else None

    def aggregations(self, query: TransferQuery, top: int = 10,
                     recent: Callable[[], pa.Table] | None = None) -> dict[str, pa.Table]:
        """The backfill's analytics tables computed over the query's window."""
        everything = TransferQuery(start_ledger=query.start_ledger, end_ledger=query.end_ledger, since=query.since,
                                   until=query.until, filter=query.filter, min_amount=query.min_amount,
                                   limit=MAX_PAGE)
        table = everything.apply(self.read(TRANSFERS_TABLE, everything.expression()))
        if recent is not None:
            fresh = recent()
            if fresh.num_rows:
                last = pc.max(table["ledger_sequence"]).as_py() if table.num_rows else None
                fresh = fresh if last is None else fresh.filter(pc.greater(fresh["ledger_sequence"], last))
                table = pa.concat_tables([table, everything.apply(fresh.cast(TOKEN_TRANSFERS))])
        return merge(hourly_partial(table), largest_partial(table, top), top)



