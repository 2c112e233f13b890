"""A one-screen summary of an output file: what it holds and a few rows of it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

# columns worth showing first, per table (the rest are listed by name)
_PREFERRED = ["sequence", "ledger_sequence", "closed_at", "transaction_hash", "event_topic", "from", "to",
              "asset", "amount_raw", "successful", "operation_count", "fee_charged", "transaction_count"]


def read_any(path: str | Path) -> pa.Table:
    path = Path(path)
    if path.suffix == ".parquet" or path.is_dir():
        return pq.read_table(path)
    if path.suffix in (".jsonl", ".json"):
        return pajson.read_json(path)
    if path.suffix == ".csv":
        return pacsv.read_csv(path)
    raise ValueError(f"{path}: unknown format (expected .parquet, .jsonl or .csv)")


def _cell(value: object, width: int = 24) -> str:
    text = "∅" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_file(path: str | Path, rows: int = 3) -> str:
    table = read_any(path)
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    lines = [f"== {path}  ({table.num_rows} rows, {table.num_columns} columns, {size:,} bytes)"]
    shown = [c for c in _PREFERRED if c in table.column_names][:6] or table.column_names[:6]
    lines.append("columns: " + ", ".join(table.column_names))
    for key in ("event_topic", "successful"):
        if key in table.column_names and table.num_rows:
            counts = pc.value_counts(table[key]).to_pylist()
            lines.append(f"by {key}: " + ", ".join(f"{c['values']}={c['counts']}" for c in counts))
    if "ledger_sequence" in table.column_names and table.num_rows:
        seqs = table["ledger_sequence"]
        lines.append(f"ledgers: {pc.min(seqs).as_py()}…{pc.max(seqs).as_py()}")
    if table.num_rows:
        lines.append("  " + " | ".join(f"{c:24}" for c in shown))
        for row in table.select(shown).slice(0, rows).to_pylist():
            lines.append("  " + " | ".join(f"{_cell(row[c]):24}" for c in shown))
    return "\n".join(lines)
