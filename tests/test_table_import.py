"""`obsrvr-ray table import`: an output of the earlier layout (Parquet files, hive directories,
a `_backfill` manifest, analytics partials) becomes Delta tables holding the same rows, each chunk
generation committed once, whatever was left half-published, however often the import runs.

The earlier output is written here the way its backfill wrote it (the sinks/dataset.py and
sinks/layout.py of the commit before the Delta tables), from sandbox ledgers."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obsrvr_ray.analytics.transfers import hourly_partial, largest_partial, merge
from obsrvr_ray.chunks.layout_import import LayoutError, hive_values, import_layout
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.network import SANDBOX
from obsrvr_ray.pipeline import ExtractOptions, RunReport, build_rows, rows_to_table
from obsrvr_ray.ranges import Range, range_key
from obsrvr_ray.schema import FAILURES, TABLES
from obsrvr_ray.sinks.files import encode_table
from obsrvr_ray.sinks.layout import data_path, failures_path
from obsrvr_ray.table.maintenance import verify
from obsrvr_ray.table.partitioning import keys_for, split
from obsrvr_ray.table.tableset import CHUNKS_TABLE, COMMIT_ORDER, LARGEST_PARTIALS, VOLUME_PARTIALS, TableSet
from obsrvr_sandbox import generate_ledgers
from tests.helpers import run_cli

NAMES = ("ledgers", "transactions", "token_transfers")
ORDER = {"ledgers": ["sequence"], "transactions": ["ledger_sequence", "transaction_index"],
         "token_transfers": ["ledger_sequence", "event_index"]}
TOP = 3
CHUNK_A, CHUNK_B = (2, 11), (12, 21)
SETTINGS = {
    "layout": 1, "network_passphrase": SANDBOX, "tables": list(NAMES), "formats": ["parquet", "jsonl"],
    "compression": "zstd", "partition_by": ["date", "asset_code"], "max_rows_per_file": 40, "events_from": "auto",
    "chain_check": True, "event_types": [], "included_assets": [], "accounts": [], "analytics": True,
    "top_transfers": TOP,
}


@functools.cache
def sandbox_rows() -> dict[int, dict[str, list[dict]]]:
    """Rows of every table for sandbox ledgers 2-21, by ledger."""
    opts, report = ExtractOptions(SANDBOX), RunReport("", 2, 21)
    out = {}
    for sequence, data in generate_ledgers(20):
        ledger = decode_ledger(data, SANDBOX, sequence=sequence)
        out[sequence] = {t: build_rows(t, ledger, opts, report) for t in NAMES}
    assert not report.failures
    return out


def rows_of(ledgers) -> dict[str, pa.Table]:
    rows = sandbox_rows()
    return {t: rows_to_table(t, [r for seq in ledgers for r in rows[seq][t]]) for t in NAMES}


def failure(sequence: int, stage: str, error: str) -> dict:
    """A failure as the manifest details held it (the earlier Failure dataclass)."""
    return {"sequence": sequence, "origin": f"lake/FFFFFFFF--{sequence}.xdr.zst", "stage": stage, "error": error}


class EarlierOutput:
    """Writes an output the way the earlier backfill did: files staged, the manifest entry
    created, files published by rename, superseded failure files removed."""

    def __init__(self, root: Path, settings: dict) -> None:
        self.root, self.settings = root, settings
        self.published: dict[str, bytes] = {}  # what a reader of the finished output sees
        self.rows: dict[str, list[pa.Table]] = {t: [] for t in settings["tables"]}
        root.mkdir(parents=True, exist_ok=True)
        self.put("_backfill/job.json", (json.dumps(settings, indent=1, sort_keys=True) + "\n").encode())

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def commit(self, chunk: Range, generation: int, ledgers: list[int], failures: list[dict], new_failures: int,
               processed: int, publish: int | None = None) -> None:
        """One chunk generation; `publish`: how many of its files were published before a crash."""
        s = self.settings
        tables = {t: v for t, v in rows_of(ledgers).items() if t in s["tables"]}
        transfers = tables.get("token_transfers")
        failures_table = pa.Table.from_pylist(
            [{"sequence": f["sequence"], "object_key": f["origin"], "stage": f["stage"], "error": f["error"]}
             for f in failures], schema=FAILURES)
        files = []  # (path, table, rows, data), in the order the earlier chunk_files listed them
        for fmt in s["formats"]:
            for name, table in tables.items():
                parts = split(table, keys_for(name, tuple(s["partition_by"])), s["max_rows_per_file"])
                files += [(data_path(fmt, name, p.directory, chunk, generation, n), name, p.table.num_rows,
                           encode_table(p.table, fmt, s["compression"])) for n, p in enumerate(parts)]
            if failures:
                files.append((failures_path(fmt, chunk), "failures", len(failures),
                              encode_table(failures_table, fmt, s["compression"])))
        if transfers is not None and s["analytics"]:
            for name, partial in {"hourly": hourly_partial(transfers), "largest": largest_partial(transfers, TOP)
                                  }.items():
                if partial.num_rows:
                    files.append((f"_backfill/partials/{name}/part-{range_key(chunk)}-g{generation}.parquet", name,
                                  partial.num_rows, encode_table(partial, "parquet")))
        removes = [failures_path(fmt, chunk) for fmt in s["formats"]] if generation and not failures else []
        attempt = uuid.uuid4().hex
        staging = f"_backfill/staging/{range_key(chunk)}.g{generation}/{attempt}/"
        self.put(staging + "_pending", b"")
        for path, _, _, data in files:
            self.put(staging + path, data)
        entry = {
            "chunk": range_key(chunk), "generation": generation, "attempt": attempt,
            "files": [{"path": p, "table": t, "rows": n, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                      for p, t, n, d in files],
            "removes": removes,
            "details": {"segments": [[chunk[0], chunk[1]]], "ledgers": processed,
                        "events": transfers.num_rows if transfers is not None else 0,
                        "rows": {t: v.num_rows for t, v in tables.items()}, "failures": failures,
                        "new_failures": new_failures},
            "committed_at": "2026-01-02T03:04:05+00:00",
        }
        self.put(f"_backfill/manifest/{range_key(chunk)}.g{generation}.json",
                 (json.dumps(entry, indent=1, sort_keys=True) + "\n").encode())
        for path, _, _, _ in files[:publish]:
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / staging / path).rename(self.root / path)
        if publish is None:
            for path in removes:
                (self.root / path).unlink(missing_ok=True)
            shutil.rmtree(self.root / staging)
        for path, _, _, data in files:
            self.published[path] = data
        for path in removes:
            self.published.pop(path, None)
        for name, table in tables.items():
            self.rows[name].append(table)

    def expected(self, name: str) -> pa.Table:
        return sort(pa.concat_tables(self.rows[name]), name)


def sort(table: pa.Table, name: str) -> pa.Table:
    return table.select(TABLES[name].names).cast(TABLES[name]).sort_by([(c, "ascending") for c in ORDER[name]])


def earlier_output(root: Path) -> EarlierOutput:
    """Two chunks: A failed ledgers 6 and 7, and its retry (g1) mended 6 but not 7; B's commit
    was cut short by a crash half-way through publishing (its other files still staged). Beside
    them, an attempt that never committed."""
    out = EarlierOutput(root, SETTINGS)
    first = [s for s in range(CHUNK_A[0], CHUNK_A[1] + 1) if s not in (6, 7)]
    out.commit(CHUNK_A, 0, first, [failure(6, "decode", "truncated XDR"), failure(7, "source", "timed out")],
               new_failures=2, processed=10)
    out.commit(CHUNK_A, 1, [6], [failure(7, "source", "timed out again")], new_failures=1, processed=2)
    out.commit(CHUNK_B, 0, list(range(CHUNK_B[0], CHUNK_B[1] + 1)), [], new_failures=0, processed=10, publish=7)
    out.put("_backfill/staging/0000000022-0000000031.g0/" + "0" * 32 + "/parquet/ledgers/date=2026-01-01/"
            "part-0000000022-0000000031-g0-000.parquet", b"never committed")
    return out


def delta_rows(tables: TableSet, name: str) -> pa.Table:
    return sort(tables.read(name), name)


def versions(tables: TableSet) -> dict[str, int]:
    return {name: tables.table(name).version() for name in COMMIT_ORDER}


def files_under(root: Path, prefix: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / prefix).rglob("*"))
            if p.is_file()}


def test_import_earlier_layout(tmp_path):
    source, out = tmp_path / "earlier", tmp_path / "tables"
    earlier = earlier_output(source)
    assert (source / "_backfill/staging").exists()  # chunk B was left half-published
    assert any("asset_code=__HIVE_DEFAULT_PARTITION__" in p for p in earlier.published)

    report = import_layout(str(source), str(out))
    assert (report.chunks, report.skipped) == (3, 0)
    assert report.rows == {name: sum(t.num_rows for t in earlier.rows[name]) for name in NAMES}

    tables = TableSet.at(str(out))
    for name in NAMES:
        assert delta_rows(tables, name).equals(earlier.expected(name)), name
    assert tables.committed() == {CHUNK_A: 1, CHUNK_B: 0}
    assert tables.failures().to_pylist() == [{
        "chunk_start": 2, "chunk_end": 11, "generation": 1, "sequence": 7, "object_key": "lake/FFFFFFFF--7.xdr.zst",
        "stage": "source", "error": "timed out again"}]
    chunks = sorted(tables.read(CHUNKS_TABLE).to_pylist(), key=lambda r: (r["chunk_start"], r["generation"]))
    assert [(r["chunk_start"], r["generation"], r["ledgers"], r["ledger_rows"], r["failures"], r["new_failures"],
             r["writer"]) for r in chunks] == [(2, 0, 10, 8, 2, 2, "import"), (2, 1, 2, 1, 1, 1, "import"),
                                               (12, 0, 10, 10, 0, 0, "import")]
    assert verify(tables, NAMES) == []
    shape = json.loads(tables.table(CHUNKS_TABLE).metadata().description)
    assert shape == {**SETTINGS, "layout": 2, "writer": "backfill"}  # later backfills into it match every setting
    assert tables.partitioned_by("token_transfers") == ("date", "asset_code")

    # analytics: the partials of every generation, merged as a backfill run ends, equal the
    # analytics of all the rows at once
    transfers = earlier.expected("token_transfers")
    assert tables.read(VOLUME_PARTIALS).num_rows and tables.read(LARGEST_PARTIALS).num_rows
    whole = merge(hourly_partial(transfers), largest_partial(transfers, TOP), TOP)
    assert report.analytics == {name: table.num_rows for name, table in whole.items()}
    for name, table in whole.items():
        assert tables.read(f"analytics/{name}").select(table.column_names).to_pylist() == table.to_pylist(), name

    # the JSON lines exports the settings ask for: the same files, byte for byte
    exported = files_under(out, "jsonl")
    assert {p: d for p, d in exported.items() if not p.startswith("jsonl/analytics/")} == {
        p: d for p, d in earlier.published.items() if p.startswith("jsonl/")}
    assert {p for p in exported if p.startswith("jsonl/analytics/")} == {f"jsonl/analytics/{n}.jsonl" for n in whole}

    # again: every chunk generation is there already, nothing is committed
    before = versions(tables)
    again = import_layout(str(source), str(out))
    assert (again.chunks, again.skipped, again.rows, again.analytics) == (0, 3, {}, {})
    assert versions(TableSet.at(str(out))) == before

    # the command, into another output
    done = run_cli("table", "import", str(source), "--out", str(tmp_path / "by-cli"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "imported 3 chunk generations (0 already there)" in done.stdout
    by_cli = TableSet.at(str(tmp_path / "by-cli"))
    assert by_cli.committed() == {CHUNK_A: 1, CHUNK_B: 0}
    for name in NAMES:
        assert delta_rows(by_cli, name).equals(earlier.expected(name)), name


@pytest.mark.parametrize(("killed_at", "held"), [
    (2, {}),  # chunk A g0 has its ledgers, nothing else
    (10, {CHUNK_A: 0}),  # chunk A g1 has its ledgers and transactions, nothing else
])
def test_import_in_place_after_a_partial_import(tmp_path, monkeypatch, killed_at, held):
    """Into the earlier output's own location (which it leaves as it was); a first import killed
    between two tables' commits of a chunk generation is finished by the next, which commits
    only what is missing."""
    earlier = earlier_output(tmp_path)
    before = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real = TableSet._commit
    calls = []

    def killed(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == killed_at:
            raise RuntimeError("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TableSet, "_commit", killed)
    with pytest.raises(RuntimeError, match="killed"):
        import_layout(str(tmp_path), str(tmp_path))
    monkeypatch.setattr(TableSet, "_commit", real)
    tables = TableSet.at(str(tmp_path))
    assert tables.committed() == held
    there = {name: tables.read(name).num_rows for name in NAMES}

    report = import_layout(str(tmp_path), str(tmp_path))
    assert (report.chunks, report.skipped) == (3 - len(held), len(held))
    for name in NAMES:
        assert report.rows.get(name, 0) + there[name] == sum(t.num_rows for t in earlier.rows[name]), name
        assert delta_rows(tables, name).equals(earlier.expected(name)), name
    assert tables.committed() == {CHUNK_A: 1, CHUNK_B: 0}
    assert verify(tables, NAMES) == []
    after = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.split("/")[0] in ("parquet", "jsonl", "_backfill")} == before


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_import_without_parquet_files(tmp_path, fmt):
    """An output written only as JSON lines or CSV: the rows come back in their exact types."""
    settings = {**SETTINGS, "formats": [fmt], "partition_by": ["asset_code", "hour"], "analytics": False}
    earlier = EarlierOutput(tmp_path / "earlier", settings)
    earlier.commit(CHUNK_B, 0, list(range(CHUNK_B[0], CHUNK_B[1] + 1)), [], new_failures=0, processed=10)
    report = import_layout(str(earlier.root), str(tmp_path / "tables"))
    assert (report.chunks, report.analytics) == (1, {})
    tables = TableSet.at(str(tmp_path / "tables"))
    for name in NAMES:
        assert delta_rows(tables, name).equals(earlier.expected(name)), name


def test_refuses_what_is_not_as_committed(tmp_path):
    earlier = earlier_output(tmp_path / "earlier")
    with pytest.raises(ConfigError, match="not an output of the earlier layout"):
        import_layout(str(tmp_path / "nothing"), str(tmp_path / "t0"))

    path = next(p for p in earlier.published if p.startswith("parquet/transactions/"))
    original = (tmp_path / "earlier" / path).read_bytes()
    table = pq.read_table(tmp_path / "earlier" / path)
    pq.write_table(table.slice(1), tmp_path / "earlier" / path)  # a row lost behind the manifest's back
    with pytest.raises(LayoutError, match="content differs from its manifest entry"):
        import_layout(str(tmp_path / "earlier"), str(tmp_path / "t1"))

    (tmp_path / "earlier" / path).unlink()
    with pytest.raises(LayoutError, match="neither published nor staged"):
        import_layout(str(tmp_path / "earlier"), str(tmp_path / "t2"))
    (tmp_path / "earlier" / path).write_bytes(original)

    # the tables hold another chunk of the same ledgers: importing would repeat them
    other = EarlierOutput(tmp_path / "other", SETTINGS)
    other.commit((2, 6), 0, [2, 3, 4, 5, 6], [], new_failures=0, processed=5)
    import_layout(str(tmp_path / "other"), str(tmp_path / "t3"))
    with pytest.raises(ConfigError, match="overlaps chunk"):
        import_layout(str(tmp_path / "earlier"), str(tmp_path / "t3"))


def test_a_manifest_entry_of_the_wrong_types_is_refused_naming_its_keys(tmp_path):
    """A manifest entry is input: a value of the wrong type is refused naming its key, rather than
    making its file seem altered (`rows` is checked against the file's rows, `bytes` its size)."""
    earlier = EarlierOutput(tmp_path / "earlier", SETTINGS)
    earlier.commit(CHUNK_B, 0, list(range(CHUNK_B[0], CHUNK_B[1] + 1)), [], new_failures=0, processed=10)
    key = tmp_path / "earlier" / f"_backfill/manifest/{range_key(CHUNK_B)}.g0.json"
    entry = json.loads(key.read_text())
    entry["files"][0]["rows"] = "many"
    entry["files"][1]["bytes"] = None
    key.write_text(json.dumps(entry))
    with pytest.raises(LayoutError, match=r"\.g0\.json: not a manifest entry of the earlier layout: "
                                          r"files\.0\.rows: .*integer.*; files\.1\.bytes: .*integer"):
        import_layout(str(tmp_path / "earlier"), str(tmp_path / "tables"))
    assert TableSet.at(str(tmp_path / "tables")).committed() == {}


def test_hive_directory_values():
    assert hive_values("parquet/token_transfers/date=2026-01-01/asset_code=__HIVE_DEFAULT_PARTITION__/"
                       "part-0000000002-0000000011-g0-000.parquet") == {"date": "2026-01-01", "asset_code": None}
    assert hive_values("jsonl/token_transfers/asset_code=A%20B%2Fc%C3%A9/part-x.jsonl") == {"asset_code": "A B/cé"}
    assert hive_values("parquet/ledgers/part-x.parquet") == {}
