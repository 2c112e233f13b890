"""Ray Data API: a ledger range as a `ray.data.Dataset`, the extraction of the project's tables
from it as a `map_batches` step, and the backfill's chunks committed by a Datasink.

    ds = read_ledgers("s3://bucket/lake", 63092982, 63093001)           # one row per ledger
    transfers, failures = extract_token_transfers(ds, event_types=("fee",))
    transfers.groupby("event_topic").count().show()
    failures.table()                                                     # after the dataset ran

`ChunkDatasource` and `TableDatasink` are the backfill's `--engine data`: one read task per chunk
(read, decode, extract) fused with the commit of the chunk to the output's Delta tables.
"""

from obsrvr_ray.data.chunk_datasource import ChunkDatasource
from obsrvr_ray.data.extract_step import (
    ChunkSplitError,
    Extractor,
    FailureLog,
    extract_table,
    extract_token_transfers,
)
from obsrvr_ray.data.ledger_datasource import LEDGER_ROWS, LedgerDatasource, read_ledgers
from obsrvr_ray.data.table_datasink import TableDatasink

__all__ = [
    "LEDGER_ROWS",
    "ChunkDatasource",
    "ChunkSplitError",
    "Extractor",
    "FailureLog",
    "LedgerDatasource",
    "TableDatasink",
    "extract_table",
    "extract_token_transfers",
    "read_ledgers",
]
