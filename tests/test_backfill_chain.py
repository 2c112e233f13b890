"""The backfill's hash chain across chunk boundaries, on a real Ray cluster over a lake of real
testnet ledgers that switches to another chain at a chunk boundary (the ledgers from there on
rewritten to link among themselves, tests/test_live_chain.py): the first ledger of the other
chain is a failure naming it and the cause, and the rest of its chunk fails with it, whether the
boundary lies inside one run or between a run and the one that extends its output (the ledger
before the new range is in the output, so the chain is checked into it), with either engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet
from tests.backfill_helpers import run_backfill
from tests.test_live_chain import COUNT, FIRST, TESTNET, other_chain, read_chain

pytestmark = pytest.mark.timeout(300)

CHUNK = 16
SWITCH = FIRST + CHUNK  # the first ledger of the second chunk
LAST = FIRST + COUNT - 1
SHAPE = ("--batch-size", str(CHUNK), "--tables", "ledgers,token_transfers", "--concurrent-readers", "1")


@pytest.fixture(scope="module")
def switched_lake(tmp_path_factory) -> Path:
    chain = read_chain()
    root = tmp_path_factory.mktemp("switched-lake")
    writer = LakeWriter(LocalStore(root), LakeConfig(network_passphrase=TESTNET))
    writer.write_config()
    writer.write(sorted({**{s: chain[s] for s in chain if s < SWITCH}, **other_chain(chain, SWITCH)}.items()))
    return root


def failures(out: Path) -> list[tuple[int, str, str]]:
    rows = TableSet(TableLocation(str(out))).failures().to_pylist()
    return sorted((r["sequence"], r["stage"], r["error"]) for r in rows)


def assert_broken_at_the_switch(out: Path) -> None:
    """The ledger that does not link fails, and so does every later ledger of its chunk: nothing
    past the break is committed there (the chunk after it links to its own ledger before, read
    from the source)."""
    found = failures(out)
    assert [f[:2] for f in found] == [(seq, "validate") for seq in range(SWITCH, SWITCH + CHUNK)]
    assert found[0][2].startswith(f"chain broken at {SWITCH}: hash chain broken between ledger {SWITCH - 1} "
                                  f"and ledger {SWITCH}")
    assert all(f[2].startswith(f"chain broken at {SWITCH}: ledger {f[0]} comes after the break") for f in found[1:])


def test_a_break_at_a_chunk_boundary_inside_a_run_is_the_failure_of_that_ledger(ray_head, switched_lake, tmp_path):
    out = tmp_path / "out"
    proc = run_backfill(ray_head, "--source", str(switched_lake), "--start", str(FIRST), "--end", str(LAST),
                        "--out", str(out), *SHAPE)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_broken_at_the_switch(out)


@pytest.mark.parametrize("engine", ["tasks", "data"])
def test_a_run_extending_the_output_links_to_the_ledger_the_output_holds(ray_head, switched_lake, tmp_path, engine):
    out = tmp_path / "out"
    args = ("--source", str(switched_lake), "--out", str(out), "--engine", engine, *SHAPE)
    first = run_backfill(ray_head, *args, "--start", str(FIRST), "--end", str(SWITCH - 1))
    assert first.returncode == 0 and failures(out) == [], first.stdout + first.stderr
    extended = run_backfill(ray_head, *args, "--start", str(SWITCH), "--end", str(LAST))
    assert extended.returncode == 1, extended.stdout + extended.stderr
    assert f"ledger {SWITCH}" in extended.stdout and "hash chain broken" in extended.stdout
    assert_broken_at_the_switch(out)
    again = run_backfill(ray_head, *args, "--start", str(SWITCH), "--end", str(LAST), "--retry-failed")
    assert again.returncode == 1, again.stdout + again.stderr  # the retry links to the output's ledger too
    assert_broken_at_the_switch(out)
