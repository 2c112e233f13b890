"""The backfill's plain-Python parts, without a cluster: planning, partitioning, the commits to
the Delta tables under a crash between any two of them and under racing writers, exact
analytics, settings, metrics."""

from __future__ import annotations

import argparse
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from prometheus_client.parser import text_string_to_metric_families

from obsrvr_ray.analytics.transfers import hourly_partial, largest_partial, merge
from obsrvr_ray.backfill_metrics import BackfillMetrics
from obsrvr_ray.backfill_settings import add_arguments, from_arguments
from obsrvr_ray.chunks.output import reset_settings
from obsrvr_ray.chunks.plan import Grid, Segment, WorkUnit, plan, plan_retries
from obsrvr_ray.chunks.process import ChunkSettings, build_commit, commit_chunk
from obsrvr_ray.chunks.raw import read_unit, records_to_table
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.network import PUBNET, SANDBOX
from obsrvr_ray.objectstore import S3Options, S3Store
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.ranges import contains, normalize, parse_ranges, subtract
from obsrvr_ray.schema import TOKEN_TRANSFERS
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.sources.base import LedgerRecord
from obsrvr_ray.sources.open import open_source
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.maintenance import verify
from obsrvr_ray.table.partitioning import split
from obsrvr_ray.table.tableset import SettingsChanged, Shape, TableSet
from tests.helpers import read_jsonl

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
    full = list(plan(requested, {}, grid))
    assert all(u.chunk[1] - u.chunk[0] + 1 <= 104 for u in full)
    assert not any(u.chunk[0] < 512 <= u.chunk[1] and u.chunk[0] != 512 for u in full)  # partition boundary
    assert [u.segments[0].link for u in full] == [False] + [True] * (len(full) - 1)
    done = {full[1].chunk: 0, full[4].chunk: 0}
    rest = list(plan(requested, done, grid))
    assert [u.chunk for u in rest] == [u.chunk for u in full if u.chunk not in done]


def test_a_retry_reads_only_the_failed_ledgers_and_links_them_to_their_predecessors():
    units = list(plan_retries(((100, 200),), {(100, 163): (0, [100, 120, 121, 150]), (164, 200): (2, [])}))
    assert units == [WorkUnit((100, 163), 1, units[0].segments)]
    assert [(s.start, s.end, s.link) for s in units[0].segments] == [(100, 100, False), (120, 121, True),
                                                                     (150, 150, True)]


def test_units_next_to_what_the_output_holds_link_to_it():
    """A run extending the output (or retrying its first ledger) checks the chain into the
    output's ledger before it, as it does between its own chunks."""
    held = {(90, 99): 0}
    first, second = plan(((100, 119),), held, Grid(10))
    assert [(s.start, s.link) for u in (first, second) for s in u.segments] == [(100, True), (110, True)]
    (alone,) = plan(((100, 109),), {}, Grid(10))
    assert not alone.segments[0].link  # nothing before it: the output's first ledger
    (retry,) = plan_retries(((100, 109),), {(100, 109): (0, [100, 105])}, normalize([(90, 99), (100, 109)]))
    assert [(s.start, s.end, s.link) for s in retry.segments] == [(100, 100, True), (105, 105, True)]


def test_the_hash_chain_is_checked_into_a_chunk_from_the_ledger_before_it():
    from obsrvr_sandbox.generator import generate_ledgers

    ours, other = dict(generate_ledgers(2, seed=1)), dict(generate_ledgers(2, seed=2))  # two chains, ledgers 2-3
    unit = WorkUnit((3, 3), 0, (Segment(3, 3, link=True),))
    settings = ChunkSettings(("ledgers",), OutputSpec("unused"), ExtractOptions(SANDBOX))

    def failures(before: bytes) -> list[dict]:
        raw = records_to_table([LedgerRecord(2, "before", data=before), LedgerRecord(3, "chunk", data=ours[3])])
        return build_commit(unit, raw, settings).failures.to_pylist()

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


class CrashingTables(TableSet):
    """A table set whose process dies after `budget` table commits (each Delta commit is atomic
    by itself: the instants that matter are between them)."""

    def __init__(self, root: Path, budget: float = float("inf")) -> None:
        super().__init__(TableLocation(str(root)))
        self.budget, self.commits = budget, 0

    def _commit(self, name, data, commit, replace=None):
        if self.commits >= self.budget:
            raise Crash
        done = super()._commit(name, data, commit, replace)
        self.commits += done
        return done


SHAPE = Shape({"layout": 2, "partition_by": ["event_type"]}, ("event_type",))


@pytest.fixture(scope="module")
def prepared(real_lake):
    """Three chunk generations of real ledgers, extracted once: two chunks, one of them with a
    corrupt ledger (generation 0, one failure) then retried with good bytes (generation 1)."""
    source = open_source(str(real_lake))
    settings = ChunkSettings(("token_transfers",), OutputSpec("unused", partition_by=("event_type",)),
                             ExtractOptions(PUBNET))
    small = next(iter(plan(((26154623, 26154623),), {}, Grid.aligned(4))))
    pair = next(iter(plan(((63092982, 63092983),), {}, Grid.aligned(4))))
    good = read_unit(source, pair)
    broken = good.set_column(3, "data", pa.array([good["data"][0].as_py(), b"\x00\x00\x00\x07junk"],
                                                 pa.large_binary()))
    first = build_commit(pair, broken, settings)
    assert first.failures.num_rows == 1
    retry = next(iter(plan_retries(((63092982, 63092983),), {pair.chunk: (0, [63092983])})))
    return [build_commit(small, read_unit(source, small), settings), first,
            build_commit(retry, read_unit(source, retry), settings)]


def _commit_all(tables: TableSet, prepared) -> None:
    tables.ensure(SHAPE, ("token_transfers",))
    done = tables.committed()
    for commit in prepared:
        if done.get(commit.chunk, -1) < commit.generation:
            tables.commit_chunk(commit, SHAPE.partition_by)


def _contents(root: Path) -> dict:
    """What readers see: every table's rows in a stable order (commit times aside)."""
    tables = TableSet(TableLocation(str(root)))
    out = {}
    for name in ("token_transfers", "volume_partials", "largest_partials", "failures", "chunks"):
        rows = tables.read(name)
        rows = rows.drop_columns([c for c in ("committed_at",) if c in rows.column_names])
        out[name] = rows.sort_by([(c, "ascending") for c in rows.column_names if c not in ("date", "hour")]).to_pylist()
    return out


def test_a_crash_between_any_two_commits_then_a_rerun_gives_exactly_the_uninterrupted_output(prepared, tmp_path):
    reference = CrashingTables(tmp_path / "reference")
    _commit_all(reference, prepared)
    expected = _contents(tmp_path / "reference")
    assert expected["failures"] == []  # the retry mended the only failure
    assert verify(reference, ("token_transfers",)) == []
    for budget in range(reference.commits):  # every point a run can die between two commits
        out = tmp_path / f"crash-{budget}"
        with pytest.raises(Crash):
            _commit_all(CrashingTables(out, budget), prepared)
        _commit_all(TableSet(TableLocation(str(out))), prepared)  # the rerun
        assert _contents(out) == expected, f"crash after {budget} commits"
        assert verify(TableSet(TableLocation(str(out))), ("token_transfers",)) == [], f"crash after {budget} commits"


def test_two_attempts_at_one_chunk_commit_once_even_at_the_same_time(prepared, tmp_path):
    commit = prepared[0]
    tables = TableSet(TableLocation(str(tmp_path)))
    tables.ensure(SHAPE, ("token_transfers",))
    assert tables.commit_chunk(commit, SHAPE.partition_by).committed_here
    assert not any(tables.commit_chunk(commit, SHAPE.partition_by).committed.values())
    racing = [TableSet(TableLocation(str(tmp_path))) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:  # four writers at once on the next chunk: one wins each table
        outcomes = list(pool.map(lambda t: t.commit_chunk(prepared[1], SHAPE.partition_by), racing))
    assert sum(o.committed_here for o in outcomes) == 1
    for name in ("token_transfers", "chunks", "failures"):
        assert sum(o.committed.get(name, False) for o in outcomes) == 1, name
    assert verify(TableSet(TableLocation(str(tmp_path))), ("token_transfers",)) == []


def test_verify_finds_a_chunk_written_twice_behind_the_protocol(prepared, tmp_path):
    tables = TableSet(TableLocation(str(tmp_path)))
    tables.ensure(SHAPE, ("token_transfers",))
    tables.commit_chunk(prepared[0], SHAPE.partition_by)
    rows = tables.read("token_transfers")
    write_deltalake(tables.uri("token_transfers"), rows.slice(0, 3), mode="append")  # no app transaction
    problems = "\n".join(verify(tables, ("token_transfers",)))
    assert "appear more than once" in problems and "the chunks table accounts for" in problems


def test_an_output_refuses_rows_made_with_other_settings(tmp_path):
    tables = TableSet(TableLocation(str(tmp_path)))
    tables.ensure(Shape({"partition_by": ["date"]}), ("token_transfers",))
    tables.ensure(Shape({"partition_by": ["date"]}), ("token_transfers",))
    with pytest.raises(ConfigError, match=r"partition_by: \['date'\] there, \['hour'\] now"):
        tables.ensure(Shape({"partition_by": ["hour"]}, ("hour",)), ("token_transfers",))


def test_settings_are_reset_only_while_nothing_is_written_and_never_the_layout(tmp_path):
    tables = TableSet(TableLocation(str(tmp_path)))
    tables.ensure(Shape({"network_passphrase": "a", "partition_by": ["date"]}), ("token_transfers",))
    moved = Shape({"network_passphrase": "a", "partition_by": ["hour"]}, ("hour",))
    with pytest.raises(SettingsChanged) as changed:
        tables.ensure(moved, ("token_transfers",))
    with pytest.raises(ConfigError, match="partition_by lay the output out, so --reset-settings cannot apply"):
        reset_settings(tables, moved, changed.value, asked=True)
    corrected = Shape({"network_passphrase": "b", "partition_by": ["date"]})
    with pytest.raises(SettingsChanged) as changed:
        tables.ensure(corrected, ("token_transfers",))
    with pytest.raises(ConfigError, match="rerun with --reset-settings --retry-failed"):
        reset_settings(tables, corrected, changed.value, asked=False)
    reset_settings(tables, corrected, changed.value, asked=True)
    tables.ensure(corrected, ("token_transfers",))  # recorded now


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
    settings = ChunkSettings(("token_transfers",), OutputSpec(str(tmp_path / "out"), formats=("parquet", "jsonl"),
                                                                partition_by=("event_type",)), ExtractOptions(PUBNET))
    TableSet(TableLocation(str(tmp_path / "out"))).ensure(SHAPE, ("token_transfers",))
    for commit in prepared[:2]:
        metrics.observe(replace(commit_chunk(commit, settings, 0.0), seconds=0.5))
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
    assert values["table_commits_total[('table', 'token_transfers')]"] == 2
    written = read_jsonl(tmp_path / "out" / "jsonl" / "failures" / "part-0063092982-0063092983.jsonl")
    assert written[0]["sequence"] == 63092983
    assert values["files_written_total[('table', 'token_transfers')]"] == len(
        list(Path(tmp_path / "out" / "jsonl" / "token_transfers").rglob("*.jsonl")))
