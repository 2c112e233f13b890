"""A bug in a rule is not bad data: it fails the run with the ledger, transaction and operation
it struck (stellar/go's formatError), and no failure row hides it. The bug is injected by
replacing one rule (PAYMENT) with a function raising AttributeError, over real ledgers; in the
backfill's Ray workers through Ray's documented `worker_process_setup_hook`. The compiled walker,
which applies the same rules in C, is switched off as on an install built without a compiler, so
that the Python rules read every ledger; a fault inside the walker is the last test here."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from stellar_sdk import xdr as X

from obsrvr_ray.chunks.job import output_shape
from obsrvr_ray.chunks.plan import Grid, plan
from obsrvr_ray.chunks.process import ChunkSettings, process_unit
from obsrvr_ray.chunks.raw import read_unit
from obsrvr_ray.cli import main
from obsrvr_ray.errors import BugError
from obsrvr_ray.jobs.driver import transient_errors
from obsrvr_ray.network import PUBNET
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.ranges import range_key
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.sources.open import open_source
from obsrvr_ray.table.location import TableLocation
from obsrvr_ray.table.tableset import TableSet
from obsrvr_ray.ttp import derive, transfer_table
from obsrvr_ray.ttp.context import TxContext
from obsrvr_ray.ttp.extract import token_transfer_rows
from tests.backfill_helpers import committed
from tests.conftest import REPO, RayHead

LEDGER = 63092982


def _broken_payment(*_args) -> list:
    raise AttributeError("injected: 'NoneType' object has no attribute 'amount'")


@pytest.fixture
def broken_rule(monkeypatch):
    monkeypatch.setattr(transfer_table, "_Columns", None)
    monkeypatch.setitem(derive.RULES, X.OperationType.PAYMENT, _broken_payment)


def first_payment(ledger) -> tuple[str, int]:
    """The hash and 1-based index of the ledger's first payment that ran: where the bug strikes."""
    for tx in ledger.transactions:
        ctx = TxContext(ledger, tx, PUBNET)
        if not ctx.successful:
            continue
        for i, op in enumerate(ctx.operations):
            if op.body.type == X.OperationType.PAYMENT:
                return ctx.tx_hash, i + 1
    raise AssertionError(f"ledger {ledger.sequence} has no successful payment")


def expected_message(decoded) -> str:
    tx_hash, op_index = first_payment(decoded(LEDGER))
    return (f"ledger {LEDGER} tx {tx_hash} operation {op_index} (PAYMENT): "
            "AttributeError: injected: 'NoneType' object has no attribute 'amount'")


def test_a_rule_bug_raises_with_the_ledger_transaction_and_operation(decoded, broken_rule):
    with pytest.raises(BugError) as raised:
        token_transfer_rows(decoded(LEDGER), PUBNET, "operations")
    assert str(raised.value) == expected_message(decoded)
    assert isinstance(raised.value.__cause__, AttributeError)  # the original, with its traceback


def test_the_export_fails_on_a_rule_bug_and_writes_no_failure(decoded, real_lake, broken_rule, tmp_path, capsys):
    out = tmp_path / "transfers.parquet"
    with pytest.raises(BugError) as raised:
        main(["export", "token-transfers", "--source", str(real_lake), "--start", str(LEDGER), "--end",
              str(LEDGER + 1), "--events-from", "operations", "--out", str(out)])
    assert str(raised.value) == expected_message(decoded)
    assert not out.exists()
    assert "failures:" not in capsys.readouterr().out


def test_a_chunk_with_a_rule_bug_raises_and_commits_nothing(decoded, real_lake, broken_rule, tmp_path):
    out = tmp_path / "out"
    settings = ChunkSettings(("ledgers", "token_transfers"), OutputSpec(str(out)),
                             ExtractOptions(PUBNET, events_from="operations"))
    unit = next(iter(plan(((LEDGER, LEDGER + 1),), {}, Grid.aligned(2))))
    raw = read_unit(open_source(str(real_lake)), unit)
    TableSet(TableLocation(str(out))).ensure(output_shape(settings), settings.tables)  # a commit would succeed
    with pytest.raises(BugError) as raised:
        process_unit(unit, raw, settings)
    assert str(raised.value) == expected_message(decoded)
    assert committed(out) == []


# The driver of a backfill, with a fault injected in every Ray worker of its job: the hook (named
# by the third argument) is pickled by value from this script and runs in each worker before any
# task. Every time the fault strikes it adds a line to the attempts file (the second argument).
DRIVER = textwrap.dedent("""
    import sys
    import ray

    ATTEMPTS = sys.argv[2]

    def attempt():
        \"\"\"Which attempt this is, over every worker: 1 the first time.\"\"\"
        with open(ATTEMPTS, "a+") as f:
            f.seek(0)
            n = len(f.readlines()) + 1
            f.write(f"attempt {n}\\n")
        return n

    def break_payment_rule():
        from stellar_sdk import xdr as X
        from obsrvr_ray.ttp import derive, transfer_table

        def broken(*_args):
            attempt()
            raise AttributeError("injected: 'NoneType' object has no attribute 'amount'")

        derive.RULES[X.OperationType.PAYMENT] = broken
        transfer_table._Columns = None  # the Python rules read every ledger

    def source_times_out_once():
        # chunks.raw's: a read task's function arrives pickled by value, naming read_unit there
        from obsrvr_ray.chunks import raw
        from obsrvr_ray.errors import TransientSourceError

        read_unit = raw.read_unit

        def flaky(source, unit):
            if attempt() == 1:
                raise TransientSourceError("injected: the store timed out", sequence=unit.chunk[0])
            return read_unit(source, unit)

        raw.read_unit = flaky

    ray.init(address=sys.argv[1], runtime_env={"worker_process_setup_hook": globals()[sys.argv[3]]})
    from obsrvr_ray.jobs.backfill import main
    sys.exit(main(sys.argv[4:]))
""")


def run_with_fault(ray_head: RayHead, hook: str, attempts: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DRIVER, ray_head.address, str(attempts), hook, *args],
                          cwd=REPO, env=ray_head.env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("engine", ["tasks", "data"])
def test_a_backfill_with_a_rule_bug_fails_naming_it_and_commits_no_failure_row(ray_head: RayHead, decoded, real_lake,
                                                                             tmp_path, engine):
    out, attempts = tmp_path / "out", tmp_path / "attempts"
    proc = run_with_fault(ray_head, "break_payment_rule", attempts, "--source", str(real_lake), "--start",
                          str(LEDGER), "--end", str(LEDGER), "--events-from", "operations", "--engine", engine,
                          "--out", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    chunk = re.search(r"^  - chunk \S+: (.*)$", proc.stdout, re.MULTILINE)
    assert chunk is not None, proc.stdout + proc.stderr
    assert f"BugError: {expected_message(decoded)}" in chunk.group(1)
    assert committed(out) == []  # nothing committed: no failures row stands for the bug
    assert attempts.read_text().splitlines() == ["attempt 1"]  # a bug is not retried: it fails the chunk at once


def test_the_data_engine_retries_a_transient_source_error_only(ray_head: RayHead, real_lake, tmp_path):
    """Ray Data retries a map task on the errors `retried_map_errors` names: the transient source
    errors (a rule bug above is raised at its first attempt)."""
    assert {"obsrvr_ray.errors.TransientSourceError: ", "obsrvr_ray.resilience.CircuitOpenError: ",
            "obsrvr_ray.resilience.BulkheadFullError: "} <= set(transient_errors())
    out, attempts = tmp_path / "out", tmp_path / "attempts"
    proc = run_with_fault(ray_head, "source_times_out_once", attempts, "--source", str(real_lake), "--start",
                          str(LEDGER), "--end", str(LEDGER), "--engine", "data", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert attempts.read_text().splitlines() == ["attempt 1", "attempt 2"]  # timed out, then read
    assert committed(out) == [f"{range_key((LEDGER, LEDGER))}.g0"]


def test_a_fault_in_the_compiled_walker_raises_naming_the_ledger(real_ledgers, monkeypatch):
    """The walker calls back into Python for what an asset names; a bug there (or in the walker)
    is raised as a BugError naming the ledger, not recorded as bad data."""
    def broken(_raw: bytes) -> tuple:
        raise AttributeError("injected: 'NoneType' object has no attribute 'issuer'")

    monkeypatch.setattr(transfer_table, "_xdr_answer", lambda raw, net: broken(raw))
    table = transfer_table.TransferTable(PUBNET, events_from="operations")
    with pytest.raises(BugError) as raised:
        table.add(real_ledgers[LEDGER], sequence=LEDGER, origin="lake object 1")
    assert str(raised.value) == (f"ledger {LEDGER} (lake object 1): compiled token-transfer walker: AttributeError: "
                                 "injected: 'NoneType' object has no attribute 'issuer'")
    assert table.take().num_rows == 0
