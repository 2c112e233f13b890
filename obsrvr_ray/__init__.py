"""obsrvr-ray: Stellar ledgers to token-transfer analytics on Ray.

The public Python API is the names below, imported from `obsrvr_ray` itself:

    from obsrvr_ray import read_ledgers, extract_token_transfers

    ds = read_ledgers("s3://bucket/lake", 63092982, 63093001)      # a ray.data.Dataset, one row per ledger
    transfers, failures = extract_token_transfers(ds)

  sources      open_source, SourceOptions, LedgerSource, LedgerRecord, LakeSource, RpcSource, EtlSource
  Ray Data     read_ledgers, LedgerDatasource, extract_token_transfers, extract_table
  extraction   decode_ledger, token_transfer_rows, ledger_events, ExtractOptions
  the table    TableSet, TableLocation, TableReader, TransferQuery, TABLES (name -> Arrow schema)
  errors       ObsrvrError, LedgerError, SourceError, DecodeError, ValidationError, ConfigError, BugError

Everything else, every module path included, is internal and may change without notice; the
command line (`obsrvr-ray`, `python -m obsrvr_ray.jobs.backfill`) and the Serve import path
(`obsrvr_ray.serve.deployments:build`) are contracts of their own.

Names load on first use, so `import obsrvr_ray` imports neither Ray nor delta-rs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "open_source": "sources.open", "SourceOptions": "sources.open", "LedgerSource": "sources.base",
    "LedgerRecord": "sources.base", "LakeSource": "sources.lake_source", "RpcSource": "sources.rpc",
    "EtlSource": "sources.etl",
    "read_ledgers": "data.ledger_datasource", "LedgerDatasource": "data.ledger_datasource",
    "extract_token_transfers": "data.extract_step", "extract_table": "data.extract_step",
    "decode_ledger": "ledger.decode", "token_transfer_rows": "ttp.extract", "ledger_events": "ttp.extract",
    "ExtractOptions": "pipeline",
    "TableSet": "table.tableset", "TableLocation": "table.location", "TableReader": "query",
    "TransferQuery": "query", "TABLES": "schema",
    "ObsrvrError": "errors", "LedgerError": "errors", "SourceError": "errors", "DecodeError": "errors",
    "ValidationError": "errors", "ConfigError": "errors", "BugError": "errors",
}
__all__ = sorted(_PUBLIC)  # noqa: PLE0605 -- the public names, listed once in _PUBLIC


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"obsrvr_ray.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'obsrvr_ray' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
