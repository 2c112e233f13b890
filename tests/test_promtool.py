"""The operators' side of monitoring, checked by Prometheus's own promtool (Debian's `prometheus`
package; .ci/run installs it): the alert rules of kuberay/alerts.yaml pass `promtool check rules`
and their unit tests (kuberay/alerts.test.yaml: a firing and a silent case for each rule) pass
`promtool test rules`; every PromQL expression of the Grafana dashboards (kuberay/grafana/) passes
`promtool check rules` as a recording rule; the dashboards are well formed and the ConfigMap that
provisions them holds exactly the JSON files.

Whether the metrics they name exist is checked against the live app's real /metrics and a real
backfill's metrics in tests/test_console.py (which runs the app); here, against the registries.

`python -m tests.test_promtool --write-configmap` rewrites kuberay/grafana/dashboards.yaml
from the JSON files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

KUBERAY = REPO / "kuberay"
ALERTS = KUBERAY / "alerts.yaml"
ALERT_TESTS = KUBERAY / "alerts.test.yaml"
GRAFANA = KUBERAY / "grafana"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))
CONFIGMAP = GRAFANA / "dashboards.yaml"
# Grafana's variables, replaced by values a query can hold, so promtool parses what Prometheus gets.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": ".*"}
# PromQL words that are not metric names: keywords, and aggregations (which may be followed by
# `by (...)` rather than "("; functions always are followed by "(").
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan", "atan2", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: install Debian's prometheus package (apt-get install prometheus; "
                    ".ci/run does)")
    return found


def run_promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    (doc,) = [d for d in yaml.safe_load_all(ALERTS.read_text()) if d]
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def write_rule_files(directory: Path) -> Path:
    """alerts.yaml's groups as a plain rule file, beside a copy of its unit tests; the tests' path."""
    (doc,) = [d for d in yaml.safe_load_all(ALERTS.read_text()) if d]
    (directory / "alerts.rules.yaml").write_text(yaml.safe_dump(doc["spec"], sort_keys=False))
    shutil.copyfile(ALERT_TESTS, directory / ALERT_TESTS.name)
    return directory / ALERT_TESTS.name


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def dashboard_queries(board: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable (label_values' selector)."""
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((f"{board['uid']} panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"]["query"])
            assert found, f"{board['uid']} variable {variable['name']}: label_values(<selector>, <label>) expected"
            out.append((f"{board['uid']} variable {variable['name']}", found.group(1)))
    return out


def all_dashboard_queries() -> list[tuple[str, str]]:
    return [q for path in DASHBOARDS for q in dashboard_queries(load_dashboard(path))]


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable promtool cannot check is left in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions or
    aggregations (followed by "("), keywords, label names (in {...}, by/without/on/ignoring
    lists) or inside strings and range/offset durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    names = set()
    for found in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[found.end():].lstrip()
        word = found.group(0)
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or text[found.start() - 1:found.start()].isdigit():
            continue
        names.add(word)
    return names


def exported_names(families) -> set[str]:
    """Every sample name a set of metric families can produce (counters' _total and _created,
    histograms' _bucket, _sum and _count), families without samples included."""
    names = set()
    for family in families:
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        names.update(sample.name for sample in family.samples)
    return names


def registry_names() -> set[str]:
    from obsrvr_ray.backfill_metrics import BackfillMetrics
    from obsrvr_ray.live.live_metrics import ApiMetrics

    return exported_names([*ApiMetrics(lambda: None).registry.collect(), *BackfillMetrics().registry.collect()])


def everything_named() -> dict[str, set[str]]:
    """Where -> the metric names it uses, for every alert rule and dashboard query."""
    named = {f"alert {rule['alert']}": metric_names(rule["expr"]) for rule in alert_rules()}
    named.update({where: metric_names(expr) for where, expr in all_dashboard_queries()})
    return named


# ---- alert rules -------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check_and_their_unit_tests(tmp_path):
    tests = write_rule_files(tmp_path)
    checked = run_promtool("check", "rules", tmp_path / "alerts.rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    tested = run_promtool("test", "rules", tests.name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_firing_and_a_silent_case():
    cases = yaml.safe_load(ALERT_TESTS.read_text())
    firing, silent = set(), set()
    for case in cases["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts without a firing case"
    assert names - silent == set(), "alerts without a silent case"
    assert firing | silent <= names, "cases of alerts that do not exist"


def test_promtool_catches_a_rule_that_does_not_fire_as_its_test_says(tmp_path):
    """The unit tests can fail: the same tests against a rule whose threshold moved."""
    tests = write_rule_files(tmp_path)
    rules = tmp_path / "alerts.rules.yaml"
    rules.write_text(rules.read_text().replace("follower_lag_ledgers{obsrvr_component=\"live\"}) > 60",
                                               "follower_lag_ledgers{obsrvr_component=\"live\"}) > 600"))
    tested = run_promtool("test", "rules", tests.name, cwd=tmp_path)
    assert tested.returncode != 0 and "ObsrvrLiveFollowerLagging" in tested.stdout + tested.stderr


# ---- dashboards --------------------------------------------------------------------------------


def test_every_dashboard_query_passes_promtool(tmp_path):
    queries = all_dashboard_queries()
    rules = [{"record": f"obsrvr:dashboard_query:{i}", "expr": substitute(expr)} for i, (_, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-queries.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
    checked = run_promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
    # ... and a broken query would have failed.
    path.write_text(yaml.safe_dump({"groups": [{"name": "broken", "rules": [
        {"record": "obsrvr:broken", "expr": "sum(rate(ledgers_processed_total[5m])"}]}]}))
    assert run_promtool("check", "rules", path).returncode != 0


def test_dashboards_are_well_formed_and_cover_what_operators_watch():
    assert {p.name for p in DASHBOARDS} == {"obsrvr-live.json", "obsrvr-backfill.json"}
    uids = set()
    for path in DASHBOARDS:
        board = load_dashboard(path)
        assert board["uid"] not in uids and len(board["uid"]) <= 40
        uids.add(board["uid"])
        assert board["title"] and board["schemaVersion"] >= 36 and board["timezone"] == "utc"
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        component = "live" if "live" in board["uid"] else "backfill"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        cells = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in cells, f"{path.name}: {panel['title']!r} overlaps another panel"
                    cells.add((x, y))
            if panel["type"] == "row":
                continue
            assert panel["title"] and panel["description"], panel["id"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
                # every selector names the component (the monitors' label) and the namespace variable
                for selector in re.findall(r"\{([^}]*)\}", target["expr"]):
                    assert f'obsrvr_component="{component}"' in selector, (panel["title"], target["expr"])
                    assert 'namespace=~"$namespace"' in selector, (panel["title"], target["expr"])
    live = " ".join(expr for where, expr in all_dashboard_queries() if where.startswith("obsrvr-live "))
    backfill = " ".join(expr for where, expr in all_dashboard_queries() if where.startswith("obsrvr-backfill "))
    # The list: rate, lag, failures, breaker and bulkhead states, request latency,
    # WebSocket connections and drops, compaction (live); rate, progress, failures (backfill).
    for name in ("ledgers_processed_total", "follower_lag_ledgers", "export_errors_total", "circuit_breaker_state",
                 "bulkhead_in_use", "bulkhead_rejections_total", "http_request_duration_seconds_bucket",
                 "websocket_connections", "websocket_dropped_total", "table_files_compacted_total"):
        assert name in live, name
    for name in ("ledgers_processed_total", "ledgers_planned", "export_errors_total", "chunks_failed_total",
                 "processing_duration_seconds_bucket", "events_processed_total"):
        assert name in backfill, name


def test_dashboards_and_alerts_name_metrics_the_code_registers():
    """Against the registries (the real scrape is tests/test_console.py's)."""
    exported = registry_names()
    for where, names in everything_named().items():
        assert names, f"{where} names no metric"
        assert names <= exported, f"{where}: {sorted(names - exported)} are not exported"


def test_metric_names_reads_promql():
    assert metric_names('sum by (le, route) (rate(http_request_duration_seconds_bucket{route=~"/v1.*"}[5m]))') == {
        "http_request_duration_seconds_bucket"}
    assert metric_names("(a_total - b) / on (namespace) group_left (pod) rate(c[1h] offset 5m) > bool 0") == {
        "a_total", "b", "c"}
    assert metric_names('absent(follower_up{obsrvr_component="live"})') == {"follower_up"}


# ---- the ConfigMap that provisions them ----------------------------------------------------------


def render_configmap() -> str:
    header = (
        "# The Grafana dashboards of kuberay/grafana/*.json, for Grafana's dashboard sidecar\n"
        "# (kube-prometheus-stack: grafana.sidecar.dashboards.enabled, which loads every ConfigMap\n"
        "# labelled grafana_dashboard=\"1\" in Grafana's namespace, or in all with searchNamespace: ALL):\n"
        "#\n"
        "#   kubectl apply -n monitoring -f kuberay/grafana/dashboards.yaml\n"
        "#\n"
        "# Generated from the JSON files (python -m tests.test_promtool --write-configmap);\n"
        "# tests/test_promtool.py fails when it differs from them.\n"
    )
    doc = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "obsrvr-grafana-dashboards",
                        "labels": {"app.kubernetes.io/name": "obsrvr-ray", "grafana_dashboard": "1"}},
           "data": {p.name: p.read_text() for p in DASHBOARDS}}

    class Literal(str):
        pass

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|"))
    doc["data"] = {k: Literal(v) for k, v in doc["data"].items()}
    return header + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=1000)


def test_the_configmap_provisions_exactly_the_dashboard_files():
    (doc,) = [d for d in yaml.safe_load_all(CONFIGMAP.read_text()) if d]
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "ConfigMap")
    assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert {name: json.loads(text) for name, text in doc["data"].items()} == {
        p.name: load_dashboard(p) for p in DASHBOARDS}, "run: python -m tests.test_promtool --write-configmap"
    assert CONFIGMAP.read_text() == render_configmap(), "run: python -m tests.test_promtool --write-configmap"
    assert len(CONFIGMAP.read_bytes()) < 900_000  # a ConfigMap holds at most 1 MiB


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-configmap"]:
        CONFIGMAP.write_text(render_configmap())
        print(f"wrote {CONFIGMAP}")
    else:
        sys.exit("usage: python -m tests.test_promtool --write-configmap")
