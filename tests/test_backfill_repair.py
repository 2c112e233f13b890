"""Outputs that bad input spoiled, mended by a rerun, over the 20 consecutive real ledgers on a
real Ray cluster: a lake object holding another ledger (each ledger once; --retry-failed once the
object is restored gives the clean run's tables), and a lake naming the wrong network (every
ledger fails; --reset-settings --retry-failed with the right one gives the clean run's tables;
refused once ledgers are written)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from obsrvr_ray.network import PUBNET, resolve_passphrase
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import CONFIG_KEY, LakeConfig
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet
from tests.backfill_helpers import run_backfill, table_contents
from tests.conftest import CONSECUTIVE

pytestmark = pytest.mark.timeout(300)

RANGE = ("--start", str(CONSECUTIVE[0]), "--end", str(CONSECUTIVE[-1]))
SHAPE = ("--batch-size", "4", "--tables", "ledgers,transactions,token_transfers", "--concurrent-readers", "2")
SEQUENCE = {"ledgers": "sequence", "transactions": "ledger_sequence", "token_transfers": "ledger_sequence"}
# What readers see of an output: its rows and analytics (the chunks, failures and partial tables
# record each run's history, which a repaired output has more of than a clean one).
DATA = (*SEQUENCE, "analytics/asset_volume_hourly", "analytics/event_type_counts", "analytics/largest_transfers")
MISPLACED = 63092998


def data_contents(out: Path) -> dict[str, list[dict]]:
    contents = table_contents(out)
    return {name: contents[name] for name in DATA}


@pytest.fixture(scope="module")
def lake(real_ledgers, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    writer = LakeWriter(LocalStore(root), LakeConfig(network_passphrase=PUBNET))
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE)
    return root


@pytest.fixture(scope="module")
def clean(ray_head, lake, tmp_path_factory) -> dict[str, list[dict]]:
    """An uninterrupted backfill from the intact lake: what every repaired output must equal."""
    out = tmp_path_factory.mktemp("clean") / "out"
    proc = run_backfill(ray_head, "--source", str(lake), *RANGE, "--out", str(out), *SHAPE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    contents = data_contents(out)
    assert [row["sequence"] for row in contents["ledgers"]] == list(CONSECUTIVE)
    return contents


def test_an_object_holding_another_ledger_is_one_failure_and_retry_failed_mends_it(ray_head, lake, clean, tmp_path):
    broken = tmp_path / "lake"
    shutil.copytree(lake, broken)
    key = LakeConfig().batch_key(MISPLACED)
    original = (broken / key).read_bytes()
    (broken / key).write_bytes((broken / LakeConfig().batch_key(MISPLACED + 1)).read_bytes())
    out = tmp_path / "out"
    args = ("--source", str(broken), *RANGE, "--out", str(out), *SHAPE)

    first = run_backfill(ray_head, *args)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "processed  20 ledgers: 19 ok, 1 failed" in first.stdout
    got = data_contents(out)
    assert [row["sequence"] for row in got["ledgers"]] == [s for s in CONSECUTIVE if s != MISPLACED]
    for table, column in SEQUENCE.items():  # every other ledger's rows once, the next ledger's included
        assert got[table] == [row for row in clean[table] if row[column] != MISPLACED], table
    expected_transfers = sum(1 for row in clean["token_transfers"] if row["ledger_sequence"] != MISPLACED)
    assert f"token_transfers {expected_transfers:,}" in first.stdout
    tables = TableSet(TableLocation(str(out)))
    (failure,) = tables.failures().to_pylist()
    assert (failure["sequence"], failure["stage"]) == (MISPLACED, "validate")
    assert failure["object_key"] == str(broken / key)
    assert failure["error"] == f"object {key} holds ledger {MISPLACED + 1}, outside its range {MISPLACED}-{MISPLACED}"

    (broken / key).write_bytes(original)
    retry = run_backfill(ray_head, *args, "--retry-failed", "--verify-output")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert "processed  1 ledgers: 1 ok, 0 failed" in retry.stdout
    assert data_contents(out) == clean
    assert tables.failures().num_rows == 0


def test_a_lake_naming_the_wrong_network_is_mended_with_reset_settings(ray_head, lake, clean, tmp_path):
    wrong = tmp_path / "lake"
    shutil.copytree(lake, wrong)
    manifest = wrong / CONFIG_KEY
    testnet = resolve_passphrase("testnet")
    manifest.write_bytes(LakeConfig(network_passphrase=testnet).to_json())
    out = tmp_path / "out"
    args = ("--source", str(wrong), *RANGE, "--out", str(out), *SHAPE)

    first = run_backfill(ray_head, *args)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "processed  20 ledgers: 0 ok, 20 failed" in first.stdout

    manifest.write_bytes(LakeConfig(network_passphrase=PUBNET).to_json())
    refused = run_backfill(ray_head, *args, "--retry-failed")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"network_passphrase: {testnet!r} there, {PUBNET!r} now" in refused.stderr
    assert "no ledger was written with the recorded settings (every one failed): rerun with --reset-settings " \
           "--retry-failed" in refused.stderr

    mended = run_backfill(ray_head, *args, "--retry-failed", "--reset-settings", "--verify-output")
    assert mended.returncode == 0, mended.stdout + mended.stderr
    assert "processed  20 ledgers: 20 ok, 0 failed" in mended.stdout
    assert data_contents(out) == clean
    assert TableSet(TableLocation(str(out))).failures().num_rows == 0

    # Once ledgers are written, their settings stay: the flag is refused, and says why.
    manifest.write_bytes(LakeConfig(network_passphrase=testnet).to_json())
    for flags in ((), ("--reset-settings",)):
        again = run_backfill(ray_head, *args, "--retry-failed", *flags)
        assert again.returncode == 2, again.stdout + again.stderr
        assert f"network_passphrase: {PUBNET!r} there, {testnet!r} now); 20 ledgers were written with the recorded " \
               "ones, so --reset-settings cannot apply: use the same settings or another output path" in again.stderr
    assert data_contents(out) == clean
