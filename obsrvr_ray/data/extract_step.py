"""Token transfers (or ledgers, transactions) from a `read_ledgers` Dataset, as a `map_batches`
step, with the failures it finds kept in a `FailureLog`. The extraction is the backfill's own
(chunks.process.extract), run per chunk so the hash chain is checked within it and into it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import Dataset

from obsrvr_ray.chunks.plan import Segment, WorkUnit
from obsrvr_ray.chunks.process import ChunkSettings, extract, is_ledger_failure
from obsrvr_ray.chunks.raw import RAW_SCHEMA
from obsrvr_ray.errors import ConfigError, Failure
from obsrvr_ray.network import resolve_passphrase
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.schema import FAILURES, TABLES, TRANSFERS_TABLE
from obsrvr_ray.sources.base import CLOSE_META
from obsrvr_ray.ttp.filters import EventFilter


class ChunkSplitError(ValueError):
    """A batch holds rows of a chunk that do not start at the chunk's first row, so the link into
    them cannot be checked."""


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

    def __init__(self, table: str = TRANSFERS_TABLE, *, network: str | None = None, events_from: str = "auto",
                 decoder: str = "fast", chain_check: bool = True, event_types: Iterable[str] = (),
                 assets: Iterable[str] = (), accounts: Iterable[str] = (), failures: FailureLog | None = None) -> None:
        if table not in TABLES:
            raise ConfigError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
        self.table = table
        self.filter = EventFilter.of(event_types, assets, accounts)
        if self.filter.active and table != TRANSFERS_TABLE:
            raise ConfigError(f"event filters apply to {TRANSFERS_TABLE} only, not to {table}")
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
        """One chunk's rows (from its first row on): (table, failures, ledgers processed), computed
        in this process (plain Python over Arrow)."""
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
        tables, report = extract(unit, raw, settings)
        table = tables[self.table]
        if self.table == TRANSFERS_TABLE:
            table = self.filter.apply(table)
        return table, failures + report.failures, named.num_rows


def _chunks(batch: pa.Table) -> Iterator[pa.Table]:
    """The batch's rows chunk by chunk, each in its read order."""
    if batch.num_rows == 0:
        return
    for start in sorted(pc.unique(batch["chunk_start"]).to_pylist()):
        yield batch.filter(pc.equal(batch["chunk_start"], start)).sort_by("chunk_row")


def extract_table(ledgers: Dataset, table: str = TRANSFERS_TABLE, *, failures: FailureLog | None = None,
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
    return extract_table(ledgers, TRANSFERS_TABLE, failures=failures, event_types=event_types, assets=assets,
                         accounts=accounts, **kwargs)
