"""Ray Data API: a ledger range as a `ray.data.Dataset`, and the extraction of the project's tables
from it as a `map_batches` step.

    ds = read_ledgers("s3://bucket/lake", 63092982, 63093001)           # one row per ledger
    transfers, failures = extract_token_transfers(ds, event_types=("fee",))
    transfers.groupby("event_topic").count().show()
    failures.table()                                                     # after the dataset ran

This module is the Ray shell only: the reading (`chunks.raw.read_unit`), the planning
(`chunks.plan`) and the extraction (`chunks.process.extract`) are the backfill's own code, plain
Python over Arrow.

How the rows are cut: `LedgerDatasource` plans the range on the backfill's grid (chunks of
`chunk_size` ledgers, rounded up to whole lake objects and never crossing a lake partition), and
makes one read task, hence one block, per chunk. The chunk is the scope of the hash-chain check:
every ledger is checked against the one before it inside the chunk, and the first one against the
ledger before the chunk, which the read task fetches too (as the backfill's readers do).

That extra ledger is not a row of the dataset (a ledger never shows twice, `count()` is the number
of ledgers): its LedgerCloseMeta rides in the `link_data` column of the chunk's first row, null
everywhere else and null when the ledger before the chunk is outside the range (the first chunk),
failed, or is not a LedgerCloseMeta. Drop the column (`ds.drop_columns(["link_data"])`) when
writing the raw ledgers elsewhere; the extraction needs it.

The extraction needs each chunk whole from its first row, so it runs with `batch_size=None` (a
batch is a block, a block is a chunk); a batch holding several whole chunks is fine too. Rows of
a chunk that do not start at its first row (Ray cut the block: it slices blocks over 1.5 x
`DataContext.target_max_block_size`, 192 MiB by default, about 190 recent pubnet ledgers) raise
`ChunkSplitError` rather than leave a link of the chain unchecked. A prefix of a chunk (`limit()`)
is whole from its first row and is fine.

Failures are never dropped: a ledger that cannot be read, decoded or validated produces no rows
and the other ledgers' rows are still produced; each failure is recorded in a `FailureLog` (a
small Ray actor), keyed by chunk so a retried task replaces rather than repeats its record.
`FailureLog.table()` returns them in the backfill's `failures` schema once the dataset has run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import Dataset
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from obsrvr_ray.chunks.plan import Grid, Segment, WorkUnit, plan
from obsrvr_ray.chunks.process import TRANSFERS, ChunkSettings, extract, is_ledger_failure
from obsrvr_ray.chunks.raw import RAW_SCHEMA, read_unit
from obsrvr_ray.errors import ConfigError, Failure
from obsrvr_ray.network import PUBNET, resolve_passphrase
from obsrvr_ray.pipeline import ExtractOptions, rows_to_table
from obsrvr_ray.ranges import normalize
from obsrvr_ray.schema import FAILURES, TABLES
from obsrvr_ray.sources.base import CLOSE_META, LedgerSource
from obsrvr_ray.sources.open import SourceOptions, open_source
from obsrvr_ray.ttp.filters import EventFilter

__all__ = [
    "LEDGER_ROWS",
    "ChunkSplitError",
    "Extractor",
    "FailureLog",
    "LedgerDatasource",
    "extract_table",
    "extract_token_transfers",
    "read_ledgers",
]

# The rows of `read_ledgers`: the backfill's raw ledgers (chunks.raw.RAW_SCHEMA), one per ledger,
# with what the extraction needs to check the hash chain and decode them on its own.
LEDGER_ROWS = pa.schema(
    [
        *RAW_SCHEMA,  # sequence, origin, kind, data (LedgerCloseMeta bytes), stage and error (a failed read)
        ("network_passphrase", pa.string()),  # the network the ledger belongs to (transaction hashes commit to it)
        ("chunk_start", pa.int64()),  # the chunk (read task) the ledger was read in: the chain is checked
        ("chunk_end", pa.int64()),  # within it, and into it from the ledger before it
        ("chunk_row", pa.int32()),  # 0-based position in the chunk: a batch must hold a chunk from row 0
        ("link_data", pa.large_binary()),  # first row only: LedgerCloseMeta of the ledger before the chunk
    ]
)

# Recent pubnet ledgers are 0.8-1.3 MB of LedgerCloseMeta (the 20 protocol-26 test ledgers average
# 0.99 MB): the planner's estimate of a ledger row, which sizes Ray Data's memory budget.
LEDGER_BYTES = 1 << 20


class ChunkSplitError(ValueError):
    """A batch holds rows of a chunk that do not start at the chunk's first row, so the link into
    them cannot be checked."""


# --- reading ----------------------------------------------------------------------------------


class LedgerDatasource(Datasource):
    """The ledgers [start, end] of a source, one read task per chunk of the backfill's grid.

    The source is opened once here, on the driver, to learn its network and (for a data lake) its
    object layout; each read task opens it again in its worker process (one per process, reused).
    """

    def __init__(self, source: str, start: int, end: int, *, options: SourceOptions | None = None,
                 chunk_size: int = 64, network: str | None = None) -> None:
        super().__init__()
        if start < 1:
            raise ConfigError(f"ledger numbers start at 1, got start={start}")
        requested = normalize([(start, end)])  # raises when end < start
        opts = options or SourceOptions()
        if network:
            opts = replace(opts, network_passphrase=resolve_passphrase(network))
        opened = open_source(source, opts)
        try:
            # As the backfill (chunks.job.resolve): an explicit network wins, then the source's own.
            self.network_passphrase = opts.network_passphrase or opened.network_passphrase or PUBNET
            lake = getattr(opened, "config", None)  # a data lake: chunks follow its objects and partitions
            grid = (Grid.aligned(chunk_size, lake.ledgers_per_batch, lake.ledgers_per_partition) if lake
                    else Grid.aligned(chunk_size))
            self.description = opened.description
        finally:
            opened.close()
        self.source, self.options, self.grid = source, opts, grid
        self.units: list[WorkUnit] = plan(requested, (), grid)

    def get_name(self) -> str:
        return "Ledgers"

    def estimate_inmemory_data_size(self) -> int:
        return sum(_rows(unit) * LEDGER_BYTES for unit in self.units)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        """One task per chunk, whatever the parallelism asked (read_ledgers asks for exactly that)."""
        tasks = []
        for index, unit in enumerate(self.units):
            metadata = BlockMetadata(num_rows=unit.ledgers, size_bytes=_rows(unit) * LEDGER_BYTES,
                                     exec_stats=None, input_files=None)
            read = _chunk_reader(self.source, self.options, self.network_passphrase, unit, first=index == 0)
            tasks.append(ReadTask(read, metadata, schema=LEDGER_ROWS, per_task_row_limit=per_task_row_limit))
        return tasks


def read_ledgers(source: str, start: int, end: int, *, options: SourceOptions | None = None, chunk_size: int = 64,
                 network: str | None = None, **read_args: Any) -> Dataset:
    """The ledgers [start, end] of `source` (a lake directory, s3://…, an RPC URL or etl:FILE) as
    a Dataset of `LEDGER_ROWS`, one row per ledger (a ledger that could not be read is a row with
    its `stage` and `error` and no `data`), one block per chunk of `chunk_size` ledgers.

    `network`: a name (pubnet, testnet, …) or passphrase; default what the source declares, else
    pubnet. `read_args` go to `ray.data.read_datasource` (num_cpus, concurrency, ray_remote_args, …).
    A source outage the source's own retries did not clear raises from the read task, which fails
    the dataset; `ray_remote_args={"retry_exceptions": [TransientSourceError]}` lets Ray retry it.
    """
    if "override_num_blocks" in read_args or "parallelism" in read_args:
        raise TypeError("read_ledgers makes one block per chunk: set chunk_size, not the number of blocks")
    datasource = LedgerDatasource(source, start, end, options=options, chunk_size=chunk_size, network=network)
    # Exactly one block per read task: fewer tasks than Ray's default parallelism would make it
    # split every task's block, cutting the chunks the extraction checks the chain over.
    return ray.data.read_datasource(datasource, override_num_blocks=len(datasource.units), **read_args)


def _rows(unit: WorkUnit) -> int:
    return unit.ledgers + sum(1 for s in unit.segments if s.link)


@functools.lru_cache(maxsize=4)
def _worker_source(spec: str, options: SourceOptions) -> LedgerSource:
    """One source per worker process (its clients, breaker and bulkhead), reused across chunks."""
    return open_source(spec, options)


def _chunk_reader(spec: str, options: SourceOptions, passphrase: str, unit: WorkUnit, *,
                  first: bool) -> Callable[[], Iterator[pa.Table]]:
    def read_chunk() -> Iterator[pa.Table]:
        yield ledger_rows(read_unit(_worker_source(spec, options), unit), unit, passphrase, keep_unnamed=first)

    return read_chunk


def ledger_rows(raw: pa.Table, unit: WorkUnit, passphrase: str, *, keep_unnamed: bool = True) -> pa.Table:
    """A unit's `read_unit` table as `LEDGER_ROWS`: the ledger before each linked segment leaves the
    rows for the `link_data` of the segment's first row. `keep_unnamed`: keep the errors no ledger
    can be named for (an etl file's bad lines, which every chunk of the file would repeat)."""
    sequence = raw["sequence"]
    links = {s.start - 1: s.start for s in unit.segments if s.link}
    keep = pc.invert(pc.fill_null(pc.is_in(sequence, pa.array(list(links), pa.int64())), False))
    if not keep_unnamed:
        keep = pc.and_(keep, pc.is_valid(sequence))
    rows = raw.filter(keep)
    link_data: dict[int, bytes] = {}
    for row in raw.filter(pc.invert(keep)).to_pylist():
        if row["sequence"] in links and row["kind"] == CLOSE_META and row["error"] is None and row["data"] is not None:
            link_data[links[row["sequence"]]] = row["data"]
    n = rows.num_rows
    columns = {
        **{name: rows[name] for name in RAW_SCHEMA.names},
        "network_passphrase": pa.array([passphrase] * n, pa.string()),
        "chunk_start": pa.array([unit.chunk[0]] * n, pa.int64()),
        "chunk_end": pa.array([unit.chunk[1]] * n, pa.int64()),
        "chunk_row": pa.array(range(n), pa.int32()),
        "link_data": pa.array([link_data.get(s) for s in rows["sequence"].to_pylist()], pa.large_binary()),
    }
    return pa.table(columns, schema=LEDGER_ROWS)


# --- failures -----------------------------------------------------------------------------------


@ray.remote(num_cpus=0)
class _FailureStore:
    """The failures of every chunk extracted so far, by (table, chunk): a retried task replaces
    its chunk's record instead of adding to it."""

    def __init__(self) -> None:
        self._chunks: dict[tuple[str, int, int], tuple[int, list[dict]]] = {}

    def put(self, key: tuple[str, int, int], ledgers: int, failures: list[dict]) -> None:
        self._chunks[key] = (ledgers, failures)

    def snapshot(self) -> dict[tuple[str, int, int], tuple[int, list[dict]]]:
        return dict(self._chunks)


class FailureLog:
    """Where the extraction records failed ledgers (and transactions whose events could not be
    extracted): a handle to a small actor, usable from any task. Read it once the dataset ran
    (`materialize()`, `write_*`, `take_all()`, …): it holds what the executed chunks found."""

    def __init__(self) -> None:
        self._store = _FailureStore.remote()

    def record(self, table: str, chunk: tuple[int, int], ledgers: int, failures: Iterable[Failure]) -> None:
        rows = [{"sequence": f.sequence, "object_key": f.origin, "stage": f.stage, "error": f.error}
                for f in failures]
        ray.get(self._store.put.remote((table, chunk[0], chunk[1]), ledgers, rows))

    def _snapshot(self) -> dict[tuple[str, int, int], tuple[int, list[dict]]]:
        return ray.get(self._store.snapshot.remote())

    def table(self) -> pa.Table:
        """Every failure recorded, in the backfill's `failures` schema (sequence, object_key,
        stage, error), once each, by ledger."""
        unique = {tuple(r.values()): r for _, rows in self._snapshot().values() for r in rows}
        ordered = sorted(unique.values(), key=lambda r: (r["sequence"] is None, r["sequence"] or 0, r["stage"],
                                                         r["object_key"], r["error"]))
        return pa.Table.from_pylist(ordered, schema=FAILURES)

    def failures(self) -> list[Failure]:
        return [Failure(r["sequence"], r["object_key"], r["stage"], r["error"]) for r in self.table().to_pylist()]

    def failed_ledgers(self) -> list[int]:
        """Ledgers that produced no rows (read, decode or validation failed)."""
        return sorted({f.sequence for f in self.failures() if is_ledger_failure(f) and f.sequence is not None})

    def ledgers(self) -> int:
        """Ledgers the extraction has processed (ok or failed), each chunk counted once."""
        return sum(ledgers for ledgers, _ in {k[1:]: v for k, v in self._snapshot().items()}.values())


# --- extraction -----------------------------------------------------------------------------------


class Extractor:
    """A `map_batches` function: a pyarrow batch of `LEDGER_ROWS` in, a table of the project's
    schema out (`TOKEN_TRANSFERS` by default), filtered by event types, assets and accounts.

        ds.map_batches(Extractor(), batch_size=None, batch_format="pyarrow")

    It is the backfill's extraction (chunks.process.extract) per chunk: decode, check the hash
    chain (within the chunk and into it), build the rows. Failures go to `self.failures`.
    `network` overrides the passphrase the rows carry (the one read_ledgers resolved).
    """

    def __init__(self, table: str = TRANSFERS, *, network: str | None = None, events_from: str = "auto",
                 decoder: str = "fast", chain_check: bool = True, event_types: Iterable[str] = (),
                 assets: Iterable[str] = (), accounts: Iterable[str] = (), failures: FailureLog | None = None) -> None:
        if table not in TABLES:
            raise ConfigError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
        self.table = table
        self.filter = EventFilter.of(event_types, assets, accounts)
        if self.filter.active and table != TRANSFERS:
            raise ConfigError(f"event filters apply to {TRANSFERS} only, not to {table}")
        self.passphrase = resolve_passphrase(network) if network else None
        self.events_from, self.decoder, self.chain_check = events_from, decoder, chain_check
        self.failures = failures if failures is not None else FailureLog()

    def __call__(self, batch: pa.Table) -> pa.Table:
        tables = []
        for piece in _chunks(batch):
            table, failures, ledgers = self.extract_chunk(piece)
            chunk = (piece["chunk_start"][0].as_py(), piece["chunk_end"][0].as_py())
            self.failures.record(self.table, chunk, ledgers, failures)
            tables.append(table)
        return pa.concat_tables(tables) if tables else TABLES[self.table].empty_table()

    def extract_chunk(self, piece: pa.Table) -> tuple[pa.Table, list[Failure], int]:
        """One chunk's rows (from its first row on): (table, failures, ledgers processed). No Ray."""
        positions = piece["chunk_row"].to_pylist()
        chunk = (piece["chunk_start"][0].as_py(), piece["chunk_end"][0].as_py())
        if positions != list(range(len(positions))):
            raise ChunkSplitError(
                f"a batch holds rows {positions[0]}-{positions[-1]} of chunk {chunk[0]}-{chunk[1]}, not the chunk from "
                "its first row: extract with map_batches(batch_size=None) on read_ledgers' blocks, and keep a chunk "
                "under 1.5 x DataContext.target_max_block_size (a smaller chunk_size) so Ray does not cut it")
        passphrase = self.passphrase or piece["network_passphrase"][0].as_py()
        named = piece.filter(pc.is_valid(piece["sequence"]))
        unnamed = piece.filter(pc.is_null(piece["sequence"])).select(["origin", "stage", "error"]).to_pylist()
        failures = [Failure(None, r["origin"], r["stage"] or "source", r["error"] or "no ledger") for r in unnamed]
        raw = named.select(RAW_SCHEMA.names)
        linked = piece.filter(pc.is_valid(piece["link_data"]))
        link = linked["link_data"][0].as_py() if linked.num_rows else None
        if link is not None:
            before = pa.table({"sequence": [chunk[0] - 1], "origin": [""],
                               "kind": [CLOSE_META], "data": [link], "stage": [None], "error": [None]},
                              schema=RAW_SCHEMA)
            raw = pa.concat_tables([before, raw])
        # The unit the read task read: the chunk, linked when the ledger before it came along.
        unit = WorkUnit(chunk, 0, (Segment(chunk[0], chunk[1], link is not None),))
        options = ExtractOptions(passphrase, events_from=self.events_from, decoder=self.decoder, filter=self.filter)
        settings = ChunkSettings((self.table,), None, options, self.chain_check, analytics=False)
        rows, report = extract(unit, raw, settings)
        table = rows_to_table(self.table, rows[self.table])
        if self.table == TRANSFERS:
            table = self.filter.apply(table)
        return table, failures + report.failures, named.num_rows


def _chunks(batch: pa.Table) -> Iterator[pa.Table]:
    """The batch's rows chunk by chunk, each in its read order."""
    if batch.num_rows == 0:
        return
    for start in sorted(pc.unique(batch["chunk_start"]).to_pylist()):
        yield batch.filter(pc.equal(batch["chunk_start"], start)).sort_by("chunk_row")


def extract_table(ledgers: Dataset, table: str = TRANSFERS, *, failures: FailureLog | None = None,
                  network: str | None = None, events_from: str = "auto", decoder: str = "fast",
                  chain_check: bool = True, event_types: Iterable[str] = (), assets: Iterable[str] = (),
                  accounts: Iterable[str] = (), **map_args: Any) -> tuple[Dataset, FailureLog]:
    """`ledgers` (from read_ledgers) mapped to one of the project's tables (token_transfers,
    ledgers, transactions), with the log its failures go to. Lazy, as every Dataset: the log fills
    as the returned dataset runs. `map_args` go to `map_batches` (num_cpus, concurrency, …)."""
    extractor = Extractor(table, network=network, events_from=events_from, decoder=decoder, chain_check=chain_check,
                          event_types=event_types, assets=assets, accounts=accounts, failures=failures)
    for fixed in ("batch_size", "batch_format"):
        if fixed in map_args:
            raise TypeError(f"extract_table sets {fixed}: a batch must be a whole chunk, as pyarrow")
    out = ledgers.map_batches(extractor, batch_size=None, batch_format="pyarrow", **map_args)
    return out, extractor.failures


def extract_token_transfers(ledgers: Dataset, *, event_types: Iterable[str] = (), assets: Iterable[str] = (),
                            accounts: Iterable[str] = (), failures: FailureLog | None = None,
                            **kwargs: Any) -> tuple[Dataset, FailureLog]:
    """`ledgers` as a token_transfers Dataset (schema.TOKEN_TRANSFERS), filtered by event types
    (transfer, mint, burn, clawback, fee), assets and accounts, and the log of its failures."""
    return extract_table(ledgers, TRANSFERS, failures=failures, event_types=event_types, assets=assets,
                         accounts=accounts, **kwargs)
