"""The backfill's plain-Python parts, without a cluster: planning, partitioning, the commit
protocol under a crash at every instant, exact analytics, settings, metrics."""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from obsrvr_ray.analytics.transfers import hourly_partial, largest_partial, merge
from obsrvr_ray.chunks.plan import Grid, Segment, WorkUnit, plan, plan_retries
from obsrvr_ray.chunks.process import ChunkSettings, build_output, result_of
from obsrvr_ray.chunks.raw import read_unit, records_to_table
from obsrvr_ray.config import add_arguments, from_arguments
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.metrics import BackfillMetrics
from obsrvr_ray.network import PUBNET, SANDBOX
from obsrvr_ray.objectstore import LocalStore, ObjectStore, S3Options, S3Store
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.ranges import contains, normalize, parse_ranges, subtract
from obsrvr_ray.schema import TOKEN_TRANSFERS
from obsrvr_ray.sinks.dataset import Dataset
from obsrvr_ray.sinks.layout import OutputSpec, is_derived
from obsrvr_ray.sinks.partitioning import split
from obsrvr_ray.sources.base import LedgerRecord
from obsrvr_ray.sources.open import open_source
from tests.backfill_helpers import file_tree

# --- ranges and planning ----------------------------------------------------------------------


def test_ranges_parse_merge_and_subtract():
    assert parse_ranges("63092982-63093001, 6154623,6154624") == ((6154623, 6154624), (63092982, 63093001))
    assert subtract([(1, 100)], [(10, 19), (50, 200)]) == ((1, 9), (20, 49))
    assert subtract([(1, 5), (8, 9)], [(5, 8)]) == ((1, 4), (9, 9))
    ranges = normalize([(5, 9), (1, 3)])
    assert contains(ranges, 3) and not contains(ranges, 4) and contains(ranges, 9) and not contains(ranges, 10)
    with pytest.raises(ConfigError, match="'7-x'"):
        parse_ranges("7-x")


def test_chunks_follow_a_fixed_grid_so_a_rerun_cuts_the_rest_as_the_first_run_would():
    grid = Grid.aligned(100, ledgers_per_batch=8, ledgers_per_partition=64 * 8)  # 100 -> 104: whole batches
    assert grid.size == 104
    requested = ((500, 1400),)
    full = plan(requested, {}, grid)
    assert all(u.chunk[1] - u.chunk[0] + 1 <= 104 for u in full)
    assert not any(u.chunk[0] < 512 <= u.chunk[1] and u.chunk[0] != 512 for u in full)  # partition boundary
    assert [u.segments[0].link for u in full] == [False] + [True] * (len(full) - 1)
    done = {full[1].chunk: 0, full[4].chunk: 0}
    rest = plan(requested, done, grid)
    assert [u.chunk for u in rest] == [u.chunk for u in full if u.chunk not in done]


def test_a_retry_reads_only_the_failed_ledgers_and_links_them_to_their_predecessors():
    units = plan_retries(((100, 200),), {(100, 163): (0, [100, 120, 121, 150]), (164, 200): (2, [])})
    assert units == [WorkUnit((100, 163), 1, units[0].segments)]
    assert [(s.start, s.end, s.link) for s in units[0].segments] == [(100, 100, False), (120, 121, True),
                                                                     (150, 150, True)]


def test_the_hash_chain_is_checked_into_a_chunk_from_the_ledger_before_it():
    from obsrvr_ray.sandbox.generator import generate_ledgers

    ours, other = dict(generate_ledgers(2, seed=1)), dict(generate_ledgers(2, seed=2))  # two chains, ledgers 2-3
    unit = WorkUnit((3, 3), 0, (Segment(3, 3, link=True),))
    settings = ChunkSettings(("ledgers",), OutputSpec("unused"), ExtractOptions(SANDBOX))

    def failures(before: bytes) -> list[dict]:
        raw = records_to_table([LedgerRecord(2, "before", data=before), LedgerRecord(3, "chunk", data=ours[3])])
        return build_output(unit, raw, settings).details["failures"]

    assert failures(ours[2]) == []
    (broken,) = failures(other[2])
    assert broken["sequence"] == 3 and broken["stage"] == "validate"
    assert "hash chain broken between ledger 2 and ledger 3" in broken["error"]


# --- partitioning ----------------------------------------------------------------------------


def test_hive_partitions_by_date_hour_asset_and_event_type():
    ts = [dt.datetime(2026, 1, 1, h, tzinfo=dt.UTC) for h in (0, 0, 1, 23)]
    table = pa.table({"closed_at": pa.array(ts, pa.timestamp("us", tz="UTC")),
                      "asset_code": ["USDC", None, "A/B", "USDC"], "event_topic": ["fee", "fee", "mint", "fee"],
                      "n": [0, 1, 2, 3]})
    parts = split(table, ("date", "hour", "asset_code", "event_type"), max_rows=1)
    dirs = [p.directory for p in parts]
    assert dirs == sorted(dirs)
    assert "date=2026-01-01/hour=0/asset_code=__HIVE_DEFAULT_PARTITION__/event_type=fee" in dirs
    assert "date=2026-01-01/hour=1/asset_code=A%2FB/event_type=mint" in dirs
    assert all("asset_code" not in p.table.column_names for p in parts)  # the directory holds it
    assert sorted(n for p in parts for n in p.table["n"].to_pylist()) == [0, 1, 2, 3]
    big = split(table, ("date",), max_rows=3)
    assert [p.table.num_rows for p in big] == [3, 1]


# --- the commit protocol -------------------------------------------------------------------------


class Crash(Exception):
    """The process died here."""


class CrashingStore(ObjectStore):
    """A local store that dies after `budget` changes. A rename is a copy then a delete, as on S3,
    so a crash between the two is covered too."""

    def __init__(self, inner: LocalStore, budget: float = float("inf")) -> None:
        self.inner, self.budget, self.url, self.changes = inner, budget, inner.url, 0

    def _change(self) -> None:
        if self.changes >= self.budget:
            raise Crash
        self.changes += 1

    def get(self, key):
        return self.inner.get(key)

    def exists(self, key):
        return self.inner.exists(key)

    def list(self, prefix=""):
        return self.inner.list(prefix)

    def put(self, key, data):
        self._change()
        self.inner.put(key, data)

    def put_if_absent(self, key, data):
        self._change()
        return self.inner.put_if_absent(key, data)

    def delete(self, key):
        self._change()
        self.inner.delete(key)

    def rename(self, src, dst):
        data = self.inner.get(src)
        self._change()
        self.inner.put(dst, data)
        self._change()
        self.inner.delete(src)


@pytest.fixture(scope="module")
def prepared(real_lake, tmp_path_factory):
    """Three chunk generations of real ledgers, encoded once: two chunks, one of them with a
    corrupt ledger (generation 0, one failure) then retried with good bytes (generation 1)."""
    source = open_source(str(real_lake))
    settings = ChunkSettings(("token_transfers",), OutputSpec("unused", partition_by=("event_type",)),
                             ExtractOptions(PUBNET))
    small = plan(((26154623, 26154623),), {}, Grid.aligned(4))[0]
    pair = plan(((63092982, 63092983),), {}, Grid.aligned(4))[0]
    good = read_unit(source, pair)
    broken = good.set_column(3, "data", pa.array([good["data"][0].as_py(), b"\x00\x00\x00\x07junk"],
                                                 pa.large_binary()))
    first = build_output(pair, broken, settings)
    assert len(first.details["failures"]) == 1
    retry = plan_retries(((63092982, 63092983),), {pair.chunk: (0, [63092983])})[0]
    return [
        (small, build_output(small, read_unit(source, small), settings)),
        (pair, first),
        (retry, build_output(retry, read_unit(source, retry), settings)),
    ]


def _commit_all(store: ObjectStore, prepared) -> None:
    dataset = Dataset(store)
    dataset.recover()
    done = dataset.committed()
    for unit, output in prepared:
        if done.get(unit.chunk, -1) < unit.generation:
            dataset.commit(unit.chunk, unit.generation, output.files, removes=output.removes, details=output.details)


def test_a_crash_at_any_instant_then_a_rerun_gives_exactly_the_uninterrupted_output(prepared, tmp_path):
    reference = tmp_path / "reference"
    counting = CrashingStore(LocalStore(reference))
    _commit_all(counting, prepared)
    expected = file_tree(reference)
    assert not any(k.startswith("parquet/failures/") for k in expected)  # the retry removed the failures file
    assert Dataset(LocalStore(reference)).verify(is_derived) == []
    for budget in range(counting.changes):  # every instant a change can be cut at
        out = tmp_path / f"crash-{budget}"
        with pytest.raises(Crash):
            _commit_all(CrashingStore(LocalStore(out), budget), prepared)
        _commit_all(LocalStore(out), prepared)  # the rerun
        assert file_tree(out) == expected, f"crash after {budget} changes"
        assert Dataset(LocalStore(out)).verify(is_derived) == [], f"crash after {budget} changes"


def test_two_attempts_at_one_chunk_commit_once(prepared, tmp_path):
    unit, output = prepared[0]
    dataset = Dataset(LocalStore(tmp_path))
    first, won = dataset.commit(unit.chunk, 0, output.files, details=output.details)
    second, won_again = dataset.commit(unit.chunk, 0, output.files, details=output.details)
    assert won and not won_again and second.attempt == first.attempt
    assert not (tmp_path / "_backfill" / "staging").exists()
    assert result_of(second, False).rows == output.details["rows"]
    assert dataset.verify(is_derived) == []


def test_verify_finds_altered_missing_and_stray_files(prepared, tmp_path):
    unit, output = prepared[1]
    dataset = Dataset(LocalStore(tmp_path))
    dataset.commit(unit.chunk, 0, output.files, details=output.details)
    data_files = sorted((tmp_path / "parquet" / "token_transfers").rglob("*.parquet"))
    data_files[0].write_bytes(b"changed")
    data_files[1].unlink()
    (tmp_path / "parquet" / "token_transfers" / "stray.parquet").write_bytes(b"x")
    problems = "\n".join(dataset.verify(is_derived))
    assert "content differs" in problems and "committed but missing" in problems
    assert "stray.parquet: in no commit" in problems


def test_an_output_refuses_files_made_with_other_settings(tmp_path):
    dataset = Dataset(LocalStore(tmp_path))
    dataset.ensure_settings({"partition_by": ["date"], "formats": ["parquet"]})
    dataset.ensure_settings({"partition_by": ["date"], "formats": ["parquet"]})
    with pytest.raises(ConfigError, match=r"partition_by: \['date'\] there, \['hour'\] now"):
        dataset.ensure_settings({"partition_by": ["hour"], "formats": ["parquet"]})


def test_s3_exclusive_create_and_rename(s3_endpoint):
    store = S3Store("commit-test", "out", S3Options(endpoint_url=s3_endpoint, region="us-east-1"))
    store.client.create_bucket(Bucket="commit-test")
    assert store.put_if_absent("_backfill/manifest/a.json", b"one")
    assert not store.put_if_absent("_backfill/manifest/a.json", b"two")
    assert store.get("_backfill/manifest/a.json") == b"one"
    store.put("staging/x", b"data")
    store.rename("staging/x", "final/x")
    assert store.get("final/x") == b"data" and not store.exists("staging/x")


# --- analytics -----------------------------------------------------------------------------------


def test_volumes_are_exact_sums_even_of_i128_amounts():
    big = 2**127 - 1  # the largest i128
    base = {c: None for c in TOKEN_TRANSFERS.names}
    rows = []
    for i, (amount, hour) in enumerate([(big, 0), (big, 0), (5, 1), (1, 30)]):
        rows.append({**base, "event_topic": "transfer", "contract_id": "CTOKEN", "asset": "", "amount_raw": str(amount),
                     "amount": float(amount) * 1e-7, "ledger_sequence": 10 + i, "event_index": 0,
                     "closed_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=hour)})
    table = pa.Table.from_pylist(rows, schema=TOKEN_TRANSFERS)
    halves = [table.slice(0, 1), table.slice(1)]  # two chunks, merged
    out = merge(pa.concat_tables([hourly_partial(t) for t in halves]),
                pa.concat_tables([largest_partial(t, 2) for t in halves]), top=2)
    hourly = {r["hour"].hour: (r["events"], int(r["volume_raw"])) for r in out["asset_volume_hourly"].to_pylist()}
    assert hourly[0] == (2, 2 * big) and hourly[1] == (1, 5)
    daily = {r["date"].day: int(r["volume_raw"]) for r in out["asset_volume_daily"].to_pylist()}
    assert daily == {1: 2 * big + 5, 2: 1}
    assert out["event_type_counts"].to_pylist() == [
        {"date": dt.date(2026, 1, 1), "event_topic": "transfer", "events": 3},
        {"date": dt.date(2026, 1, 2), "event_topic": "transfer", "events": 1},
    ]
    largest = out["largest_transfers"].to_pylist()
    assert [(r["rank"], int(r["amount_raw"]), r["ledger_sequence"]) for r in largest] == [(1, big, 10), (2, big, 11)]


# --- settings ----------------------------------------------------------------------------------------


def _config(*argv: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(list(argv)))


def test_yaml_settings_are_checked_by_key_and_flags_override_them(tmp_path):
    path = tmp_path / "backfill.yaml"
    path.write_text(
        "source: {type: datalake, url: /lake, network_passphrase: pubnet}\n"
        "range: {start_ledger: 100, end_ledger: 199}\n"
        "processing: {batch_size: 32, concurrent_readers: 4}\n"
        "filters: {event_types: [transfer, mint], included_assets: [native]}\n"
        "output: {path: s3://bucket/out, formats: [parquet, jsonl], compression: lz4,"
        " partition_by: [date, event_type]}\n"
    )
    config = _config("--config", str(path), "--batch-size", "8", "--ledgers", "5-9,20")
    assert config.batch_size == 8 and config.concurrent_readers == 4
    assert config.ranges == ((5, 9), (20, 20))  # the flag's range replaces the file's
    assert config.formats == ("parquet", "jsonl") and config.partition_by == ("date", "event_type")
    assert config.event_types == ("transfer", "mint") and config.included_assets == ("native",)
    for text, message in [
        ("output: {path: /o, partiton_by: [date]}", r"output.partiton_by: unknown key .*did you mean 'partition_by'"),
        ("processing: {batch_size: many}", "processing.batch_size: expected a whole number >= 1, got 'many'"),
        ("output: {path: /o, compression: zip}", "output.compression: 'zip' is not one of"),
        ("filters: {event_types: [transfer, swap]}", "filters.event_types: 'swap' not among"),
        ("output: {path: /o, partition_by: [month]}", r"output.partition_by: unknown partition keys \['month'\]"),
        ("output: {path: /o}\noutput: {formats: [csv]}", "key 'output' given twice"),
        ("sources: {url: /lake}", r"sources: unknown key .*did you mean 'source'"),
    ]:
        path.write_text(f"source: {{url: /lake}}\nrange: {{ledgers: '3'}}\n{text}\n")
        with pytest.raises(ConfigError, match=message):
            _config("--config", str(path))
    path.write_text("source: {url: /lake, type: s3}\noutput: {path: /o}\nrange: {ledgers: '3'}\n")
    with pytest.raises(ConfigError, match=r"source.type \(--source-type\) is 's3' but source.url"):
            _config("--config", str(path))


def test_the_example_config_is_valid():
    config = _config("--config", str(Path(__file__).parents[1] / "cluster" / "backfill.example.yaml"))
    assert config.source.startswith("s3://") and config.partition_by == ("date", "event_type")


def test_a_backfill_needs_a_bounded_range():
    with pytest.raises(ConfigError, match=r"range.end_ledger \(--end\) is required"):
        _config("--source", "/lake", "--out", "/o", "--start", "5")
    with pytest.raises(ConfigError, match="no ledgers to backfill"):
        _config("--source", "/lake", "--out", "/o")
    assert _config("--source", "/lake", "--out", "/o", "--retry-failed").ranges == ()
    with pytest.raises(ConfigError, match="use `obsrvr-ray export`"):
        _config("--source", "etl:/x.jsonl", "--out", "/o", "--start", "1", "--end", "2")


# --- metrics ------------------------------------------------------------------------------------------


def test_metrics_count_what_chunks_report(prepared, tmp_path):
    metrics = BackfillMetrics()
    for unit, output in prepared[:2]:
        commit, _ = Dataset(LocalStore(tmp_path / "out")).commit(unit.chunk, unit.generation, output.files,
                                                                 details=output.details)
        metrics.observe(replace(result_of(commit, True), seconds=0.5))
    metrics.current_ledger.set(63092983)
    metrics.write(str(tmp_path / "backfill.prom"))
    values = {s.name + str(sorted(s.labels.items())): s.value
              for family in text_string_to_metric_families((tmp_path / "backfill.prom").read_text())
              for s in family.samples}
    assert values["ledgers_processed_total[]"] == 3
    assert values["batches_generated_total[]"] == 2
    assert values["export_errors_total[('stage', 'decode')]"] == 1
    assert values["current_ledger[]"] == 63092983
    assert values["processing_duration_seconds_count[]"] == 2
    written = pq.read_table(tmp_path / "out" / "parquet" / "failures" / "part-0063092982-0063092983.parquet")
    assert written.to_pylist()[0]["sequence"] == 63092983
    assert values["files_written_total[('table', 'token_transfers')]"] == len(
        list(Path(tmp_path / "out" / "parquet" / "token_transfers").rglob("*.parquet")))
