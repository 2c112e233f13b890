"""The README's snippets for reading the tables (DuckDB, Polars, Ray Data) run as written, each in
its own Python process, over a backfill's tables, and print what the tables hold."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from obsrvr_ray.query import TableReader
from tests.backfill_helpers import run_backfill
from tests.conftest import CONSECUTIVE, REPO

pytestmark = pytest.mark.timeout(300)
SNIPPET = re.compile(r"<!-- snippet: ([\w-]+) -->\n```python\n(.*?)```", re.S)


def snippets() -> dict[str, str]:
    return dict(SNIPPET.findall((REPO / "README.md").read_text()))


@pytest.fixture(scope="module")
def out(ray_head, real_lake, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("snippets") / "out"
    proc = run_backfill(ray_head, "--source", str(real_lake), "--start", str(CONSECUTIVE[0]), "--end",
                        str(CONSECUTIVE[3]), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def run_snippet(name: str, out: Path, env: dict[str, str]) -> str:
    code = f"out = {str(out)!r}\n" + snippets()[name]
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_readme_has_the_three_snippets():
    assert {"duckdb", "polars", "ray-data"} <= set(snippets())


def test_duckdb_snippet(out):
    printed = run_snippet("duckdb", out, dict(os.environ))
    rows = TableReader(str(out)).read("token_transfers")
    expected = {t: sum(1 for v in rows["event_topic"].to_pylist() if v == t)
                for t in set(rows["event_topic"].to_pylist()) - {"fee"}}
    assert sorted(ast.literal_eval(printed)) == sorted(expected.items())


def test_polars_snippet(out):
    height, total = run_snippet("polars", out, dict(os.environ)).split()
    rows = TableReader(str(out)).read("token_transfers")
    fees = [a for t, a in zip(rows["event_topic"].to_pylist(), rows["amount"].to_pylist(), strict=True) if t == "fee"]
    assert int(height) == len(fees) > 0
    assert float(total) == pytest.approx(sum(fees))


def test_ray_data_snippet(out, ray_head):
    printed = run_snippet("ray-data", out, {**ray_head.env, "RAY_ADDRESS": ray_head.address})
    rows = TableReader(str(out)).read("token_transfers")
    for topic in set(rows["event_topic"].to_pylist()):
        count = sum(1 for v in rows["event_topic"].to_pylist() if v == topic)
        assert f"'event_topic': '{topic}', 'count()': {count}" in printed, printed
