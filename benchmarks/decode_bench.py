"""Token-transfer rows from ledger bytes: ours against the reference, in one run, on one core.

For every real ledger in ../shared/data/ledgers (pubnet by protocol era, and the 320 testnet
ledgers of protocol 19) and for a generated lake, measures ledger bytes -> validated ledger ->
the token_transfers table in Arrow, three ways:
  ours       ttp.transfer_table.TransferTable: the compiled walker (core's unified events where
             every meta is v4, else the compiled operation rules);
  rules      our decoder and the Python rules (the path before the walker, and its oracle);
  reference  stellar-sdk's decoder and the same rules.
Each ledger runs in rounds of (ours three times, rules once, the reference once), keeping each
one's best, so that a slow spell of a shared machine hits all three. Also stellar-sdk's decoding
alone, and the per-ledger fixed cost of ours in a batch (the testnet ledgers added to one table,
one take, as a backfill chunk does): the intercept of its time against the transaction count
(least squares), and the median time of the ledgers without transactions. CPU time of this
process is the clock (single thread): the numbers are per core.
Results go to benchmarks/results/decode.json.

    python -m benchmarks.decode_bench [--shared ../shared/data] [--generated 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from functools import cache
from pathlib import Path

import pyarrow.parquet as pq
from stellar_sdk import xdr as X

from benchmarks.common import RESULTS, machine, sandbox_lake
from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.network import PUBNET, SANDBOX, resolve_passphrase
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.schema import TRANSFERS_TABLE, rows_to_table
from obsrvr_ray.sinks.lake_writer import read_ledger_file
from obsrvr_ray.sources.lake_source import LakeSource
from obsrvr_ray.ttp.extract import token_transfer_rows
from obsrvr_ray.ttp.transfer_table import TransferTable
from obsrvr_ray.xdr.fast import compiled_available

ERAS = [("protocol 2-19 (LedgerCloseMeta v0)", 0, 19), ("protocol 20-22 (v1)", 20, 22),
        ("protocol 23-26 (v2, parallel sets)", 23, 99), ("protocol 26 only", 26, 26)]
TESTNET_DIR = "stellar-go-testnet"
PATHS = ("ours", "rules", "reference")


@cache
def _table(passphrase: str) -> TransferTable:
    return TransferTable(passphrase)


def run_path(data: bytes, passphrase: str, path: str) -> int:
    """One ledger's bytes to its token_transfers table; returns the row count."""
    if path == "ours":
        table = _table(passphrase)
        table.add(data)
        return table.take().num_rows
    ledger = decode_ledger(data, passphrase, decoder="fast" if path == "rules" else "reference")
    rows, _ = token_transfer_rows(ledger, passphrase)
    return rows_to_table(TRANSFERS_TABLE, rows).num_rows


def _best(data: bytes, passphrase: str, path: str, repeat: int) -> tuple[float, int]:
    """Fewest CPU seconds of `repeat` runs over one ledger, and its row count."""
    best, events = None, 0
    for _ in range(repeat):
        start = time.process_time()
        events = run_path(data, passphrase, path)
        elapsed = time.process_time() - start
        best = elapsed if best is None else min(best, elapsed)
    return best, events


def measure_each(ledgers: list[bytes], passphrase: str, rounds: int, fast_per_round: int) -> list[dict]:
    """Per ledger, `rounds` rounds of (ours `fast_per_round` times, the rules and the reference
    once each), keeping each path's best (CPU seconds of this process). And stellar-sdk's
    decoding alone, once."""
    for path in PATHS:
        run_path(ledgers[0], passphrase, path)  # warm: schema tables, caches
    out = []
    for data in ledgers:
        best = dict.fromkeys(PATHS, float("inf"))
        counts = {}
        for _ in range(rounds):
            for path in PATHS:
                seconds, counts[path] = _best(data, passphrase, path, fast_per_round if path == "ours" else 1)
                best[path] = min(best[path], seconds)
        assert len(set(counts.values())) == 1, "the paths disagree: run tests/test_transfer_columns.py"
        start = time.process_time()
        X.LedgerCloseMeta.from_xdr_bytes(data)
        out.append({"bytes": len(data), "events": counts["ours"], **best, "alone": time.process_time() - start,
                    "transactions": len(decode_ledger(data, passphrase, decoder="fast").transactions)})
    return out


def batched(ledgers: list[bytes], passphrase: str, rounds: int = 3) -> tuple[list[float], float]:
    """The ledgers added to one TransferTable, then one take(), as a backfill chunk or a live
    page does: each add's best CPU seconds over `rounds`, and the best take."""
    adds = [float("inf")] * len(ledgers)
    take = float("inf")
    table = TransferTable(passphrase)
    for _ in range(rounds):
        for i, data in enumerate(ledgers):
            start = time.process_time()
            table.add(data)
            adds[i] = min(adds[i], time.process_time() - start)
        start = time.process_time()
        table.take()
        take = min(take, time.process_time() - start)
    return adds, take


def fixed_cost(measured: list[dict], adds: list[float], take: float) -> dict:
    """Ours' per-ledger cost that does not grow with the ledger, in a batch: the intercept of a
    least-squares line through (transactions, seconds of the ledger's add plus its share of the
    take), and the median of the ledgers without transactions."""
    xs = [m["transactions"] for m in measured]
    ys = [a + take / len(adds) for a in adds]
    slope, intercept = statistics.linear_regression(xs, ys)
    empty = [y for x, y in zip(xs, ys, strict=True) if x == 0]
    return {"intercept_us": round(intercept * 1e6, 1), "per_transaction_us": round(slope * 1e6, 1),
            "empty_ledgers": len(empty),
            "empty_ledger_median_us": round(statistics.median(empty) * 1e6, 1) if empty else None,
            "mean_us": round(statistics.fmean(ys) * 1e6, 1), "mean_transactions": round(statistics.fmean(xs), 2),
            "batch_ledgers_per_s": round(len(ys) / sum(ys), 1)}


def summary(measured: list[dict]) -> dict:
    """Rates over a group of ledgers measured by measure_each, and the ratios."""
    n, size, events = len(measured), sum(m["bytes"] for m in measured), sum(m["events"] for m in measured)

    def rates(key: str) -> dict:
        seconds = sum(m[key] for m in measured)
        return {"ledgers": n, "seconds": round(seconds, 4), "ledgers_per_s": round(n / seconds, 2),
                "mb_per_s": round(size / 1e6 / seconds, 2), "events_per_s": round(events / seconds, 1),
                "events": events}

    ours, rules, ref, alone = rates("ours"), rates("rules"), rates("reference"), rates("alone")
    return {"reference": ref, "rules": rules, "ours": ours,
            "stellar_sdk_decode_only": {k: alone[k] for k in ("ledgers", "seconds", "ledgers_per_s")},
            "ratio": round(ours["ledgers_per_s"] / ref["ledgers_per_s"], 1),
            "ratio_vs_rules": round(ours["ledgers_per_s"] / rules["ledgers_per_s"], 2),
            "ratio_vs_stellar_sdk_decode_only": round(ours["ledgers_per_s"] / alone["ledgers_per_s"], 1),
            "mean_xdr_mb": round(size / n / 1e6, 3)}


def parquet_rows_per_s(ledgers: list[bytes], passphrase: str) -> dict:
    """Rows/s of ledgers added to one TransferTable (bytes to Arrow, as a backfill chunk does)
    and of writing that table as Parquet."""
    table = TransferTable(passphrase)
    table.add(ledgers[0])
    pq.write_table(table.take(), io.BytesIO(), compression="zstd")  # warm pyarrow
    start = time.process_time()
    for data in ledgers:
        table.add(data)
    built = table.take()
    build = time.process_time() - start
    buf = io.BytesIO()
    start = time.process_time()
    pq.write_table(built, buf, compression="zstd")
    write = time.process_time() - start
    return {"rows": built.num_rows, "ledgers": len(ledgers), "ledgers_per_s": round(len(ledgers) / build, 1),
            "arrow_rows_per_s": round(built.num_rows / build), "parquet_rows_per_s": round(built.num_rows / write),
            "parquet_bytes": buf.tell()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("OBSRVR_SHARED_DATA", "../shared/data"))
    parser.add_argument("--generated", type=int, default=300, help="generated ledgers for the volume run")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "obsrvr-bench"))
    args = parser.parse_args()

    real: dict[int, bytes] = {}
    testnet: list[bytes] = []
    for path in sorted(Path(args.shared, "ledgers").glob("*/*")):
        if path.suffix == ".md":
            continue
        if path.parent.name == TESTNET_DIR:
            testnet += [data for _, data in read_ledger_file(path)]
        else:
            real.update(read_ledger_file(path))
    protocols = {seq: decode_ledger(data, PUBNET, decoder="fast").protocol_version for seq, data in real.items()}
    report = {"machine": machine(), "compiled_decoder": compiled_available(), "eras": {}}
    order = sorted(real)
    measured = dict(zip(order, measure_each([real[s] for s in order], PUBNET, rounds=5, fast_per_round=3),
                        strict=True))
    for name, lo, hi in ERAS:
        report["eras"][name] = summary([measured[s] for s in order if lo <= protocols[s] <= hi])
    testnet_passphrase = resolve_passphrase("testnet")
    testnet_measured = measure_each(testnet, testnet_passphrase, rounds=3, fast_per_round=3)
    report["eras"]["protocol 19 testnet (small ledgers)"] = summary(testnet_measured)
    report["fixed_cost"] = fixed_cost(testnet_measured, *batched(testnet, testnet_passphrase))
    lake = sandbox_lake(Path(args.work), args.generated)
    generated = [r.data for r in LakeSource(LocalStore(lake)).records(2, args.generated + 1)]
    report["generated"] = summary(measure_each(generated, SANDBOX, rounds=1, fast_per_round=3))
    report["parquet"] = parquet_rows_per_s([real[s] for s in sorted(real) if protocols[s] >= 23], PUBNET)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "decode.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"machine: {m['cpu_model']}, {m['cpus']} cores, {m['memory_gib']} GiB, Python {m['python']}; "
          f"compiled decoder: {report['compiled_decoder']}")
    print("bytes -> validated ledger -> token_transfers in Arrow, one core. ours: TransferTable; rules: our "
          "decoder + the Python rules; reference: stellar-sdk's decoder + the rules")
    print(f"{'ledgers':<40} {'':>9} {'ledgers/s':>10} {'MB/s':>8} {'rows/s':>10}")
    for name, r in [*report["eras"].items(), ("generated sandbox ledgers", report["generated"])]:
        n = r["ours"]["ledgers"]
        for i, label in enumerate(("reference", "rules", "ours")):
            m = r[label]
            head = f"{name} ({n})" if i == 0 else ""
            print(f"{head:<40} {label:>9} {m['ledgers_per_s']:>10} {m['mb_per_s']:>8} {m['events_per_s']:>10}")
        alone = r["stellar_sdk_decode_only"]["ledgers_per_s"]
        print(f"{'':<40} {'':>9} ours/reference {r['ratio']}x, ours/rules {r['ratio_vs_rules']}x; "
              f"stellar-sdk decoding alone {alone} ledgers/s")
    f = report["fixed_cost"]
    print(f"testnet ledgers in one table: {f['batch_ledgers_per_s']} ledgers/s; per ledger {f['intercept_us']} us "
          f"fixed (intercept) + {f['per_transaction_us']} us a transaction; {f['empty_ledgers']} empty ledgers: "
          f"median {f['empty_ledger_median_us']} us; mean {f['mean_us']} us at {f['mean_transactions']} transactions")
    p = report["parquet"]
    print(f"token_transfers of {p['ledgers']} ledgers in one table: {p['ledgers_per_s']} ledgers/s, "
          f"{p['arrow_rows_per_s']:,} rows/s into Arrow, {p['parquet_rows_per_s']:,} rows/s written as Parquet (zstd)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
