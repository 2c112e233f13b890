"""The web console in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium) against the real Serve app, over HTTPS with API keys on, following a getLedgers server
that the test closes ledgers on (sandbox ledgers 45 minutes apart, so two days of hourly volume).

Shown here: the page shows no data and makes no data request without a key, and loads with a
reader key (kept in sessionStorage, never in a URL); new transfers appear within 10 s of their
ledger closing; a filter narrows the stream to matching rows, pausing then resuming misses none,
and a subscription the app refuses is reported, not retried; the volume charts plot exactly
/v1/analytics's numbers; an account lookup shows the same rows as REST, page by page, and a
transaction and a ledger page show theirs; the status view shows the follower, readiness,
breaker and the tables' versions and last compaction; the browser logs no error and no CSP
violation; a wrong key is refused; in dev mode the page needs no key; the files served are the
npm package's, checked. A screenshot of each view is saved under the test's temporary directory
(and the README's into docs/ with OBSRVR_SCREENSHOTS_TO=docs).

Then the monitoring side: every metric a Grafana dashboard or an alert rule names is in this
app's real /metrics or a real backfill's metrics.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import requests

from obsrvr_ray.ledger.decode import decode_ledger
from obsrvr_ray.network import SANDBOX
from obsrvr_ray.objectstore import LocalStore
from obsrvr_ray.rpc_server import LedgerArchive, RpcServer
from obsrvr_ray.security.keystore import KeyStore
from obsrvr_ray.security.tls import generate_self_signed
from obsrvr_ray.serve.console import CONSOLE_CSP, VENDOR, charting_library
from obsrvr_ray.sinks.lake_writer import LakeWriter
from obsrvr_ray.sources.lake_layout import LakeConfig
from obsrvr_ray.ttp.extract import token_transfer_rows
from obsrvr_sandbox.generator import DEFAULT_CLOSE_TIME, SandboxNetwork
from tests.backfill_helpers import run_backfill, wait_for
from tests.conftest import REPO, free_port
from tests.test_live_app import Live, _ready
from tests.test_promtool import DASHBOARDS, alert_rules, dashboard_queries, exported_names, load_dashboard, metric_names

APP = "obsrvr-console-test"
LEDGERS = 64  # sandbox ledgers 2..65
SPACING = 45 * 60  # seconds between their close times: 2..65 span two days
SERVED_AT_START = 30  # the node has 2..30 when the app starts; the tests close the rest
CHROMIUM = os.environ.get("OBSRVR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("OBSRVR_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS_TO = os.environ.get("OBSRVR_SCREENSHOTS_TO")  # e.g. docs: also save the README's screenshot there
README_SCREENSHOT = "console.png"
README_VIEW = "live"
KEY_STORAGE = "obsrvr.console.credential"


@pytest.fixture(scope="module")
def ledgers() -> dict[int, bytes]:
    network = SandboxNetwork()
    return dict(network.next_ledger(DEFAULT_CLOSE_TIME + i * SPACING) for i in range(LEDGERS))


@pytest.fixture(scope="module")
def expected(ledgers) -> dict[int, list[dict]]:
    return {seq: token_transfer_rows(decode_ledger(data, SANDBOX), SANDBOX)[0] for seq, data in ledgers.items()}


@pytest.fixture(scope="module")
def app(ray_head, ledgers, tmp_path_factory):
    """The live app on Ray Serve (HTTPS, API keys), as tests/test_live_app.py starts it, with the
    default limits a browser meets and table maintenance every 10 s."""
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions

    from obsrvr_ray.serve.deployments import compose
    from obsrvr_ray.serve.serve_settings import live_config_from_args

    work = tmp_path_factory.mktemp("console")
    lake = work / "lake"
    writer = LakeWriter(LocalStore(lake), LakeConfig(network_passphrase=SANDBOX))
    writer.write_config()
    writer.write(ledgers.items())
    tls = generate_self_signed(work / "tls")
    store = KeyStore(work / "keys.json")
    keys = {"console": store.create("reader", name="the browser")[1],
            "reader": store.create("reader", name="the test's REST calls")[1],
            "monitor": store.create("processor", name="the test's health polls")[1]}
    keys["wrong"] = keys["console"][:-4] + "AAAA"
    archive = LedgerArchive()
    archive.add_all(ledgers[s] for s in range(2, SERVED_AT_START + 1))
    rpc_port = free_port()
    rpc = RpcServer(archive, SANDBOX, port=rpc_port).start()

    os.environ.update(ray_head.env)
    ray.init(address=ray_head.address, namespace=APP, logging_level="ERROR")
    http_port = free_port()
    config = live_config_from_args({
        "rpc_url": rpc.url, "dataset": str(work / "out"), "start": 2, "lake": str(lake), "commit_every": 4,
        "flight_port": free_port(), "maintenance": {"compact_every": 10},
        "security": {"key_store": str(store.path), "tls_cert": str(tls.cert), "tls_key": str(tls.key)},
    })
    serve.start(http_options=HTTPOptions(host="127.0.0.1", port=http_port, ssl_certfile=str(tls.cert),
                                         ssl_keyfile=str(tls.key)))
    serve.run(compose(config), name=APP, route_prefix="/", blocking=False)
    live = Live(base=f"https://127.0.0.1:{http_port}", ws=f"wss://127.0.0.1:{http_port}/v1/subscribe", tls=tls,
                keys=keys, store=store, archive=archive, rpc=rpc, ledgers=ledgers, lake=lake, work=work)
    try:
        wait_for(lambda: _ready(live) and live.status()["next_ledger"] == SERVED_AT_START + 1, timeout=180,
                 what="the app to be ready", interval=1.0)
        yield live
    finally:
        serve.delete(APP)
        serve.shutdown()
        ray.shutdown()
        rpc.stop()


def _spki_sha256(cert: Path) -> str:
    """The certificate's public key hash, the form Chromium's --ignore-certificate-errors-spki-list takes:
    the browser trusts the test's self-signed server certificate and nothing else."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    return base64.b64encode(hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
                            .digest()).decode()


class Browser:
    """Headless Chromium through chromedriver; its console log is kept across tests."""

    def __init__(self, driver, base: str, shots: Path) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots
        self.log: list[dict] = []

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, predicate, timeout: float = 30, what: str = "the page"):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda _: predicate(),
                                                                             f"no {what} in {timeout} s")

    def find(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def shown(self, selector: str) -> bool:
        return self.js("const e = document.querySelector(arguments[0]); return !!e && e.offsetParent !== null",
                       selector)

    def text(self, selector: str) -> str:
        return self.js("return document.querySelector(arguments[0]).textContent", selector)

    def go(self, hash_: str) -> None:
        self.js("location.hash = arguments[0]", hash_)

    def rows(self, table: str) -> list[dict]:
        return self.js("return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map(tr => ({...tr.dataset}))",
                       table)

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if SCREENSHOTS_TO and name == README_VIEW:
            shutil.copyfile(path, REPO / SCREENSHOTS_TO / README_SCREENSHOT)
        return path

    def drain_log(self) -> list[dict]:
        entries = self.driver.get_log("browser")
        self.log += entries
        return entries


@pytest.fixture(scope="module")
def browser(app, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} not found: install Debian's chromium and chromium-driver (.ci/run does)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--no-proxy-server", "--window-size=1440,1000", "--lang=en-US",
                f"--user-data-dir={profile}", f"--ignore-certificate-errors-spki-list={_spki_sha256(app.tls.cert)}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    shots = tmp_path_factory.mktemp("screenshots")
    try:
        yield Browser(driver, app.base, shots)
    finally:
        driver.quit()


def _severe(entries: list[dict]) -> list[str]:
    return [e["message"] for e in entries if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]]


def _keys(rows: list[dict]) -> list[str]:
    return [f"{r['ledger_sequence']}:{r['event_index']}" for r in rows]


def _rest_rows(app: Live, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        body = app.get("/v1/token-transfers", limit=1000, cursor=cursor, **params).json()
        rows += body["rows"]
        if (cursor := body["next_cursor"]) is None:
            return rows


# ---- the page ---------------------------------------------------------------------------------


def test_the_page_shows_no_data_without_a_key_and_loads_with_a_reader_key(app, browser):
    response = requests.get(f"{app.base}/", verify=str(app.tls.ca_cert), timeout=30)
    assert response.status_code == 200 and response.headers["Content-Security-Policy"] == CONSOLE_CSP
    assert "unsafe-inline" not in CONSOLE_CSP and 'content="required"' in response.text

    browser.driver.get(f"{app.base}/")
    browser.wait(lambda: browser.js("return !!window.obsrvrConsole"), what="console module")
    assert browser.shown("#signin") and browser.shown("#key-form")
    for hidden in ("#tabs", "#view-live", "#view-volume", "#view-lookup", "#view-status"):
        assert not browser.shown(hidden), hidden
    browser.go("status")  # an address of a view: still nothing without a key
    time.sleep(1)
    assert browser.shown("#signin") and not browser.shown("#view-status")
    fetched = browser.js("return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)")
    assert fetched and all(p.startswith("/console/") for p in fetched), fetched  # its own files, no data
    assert browser.rows("#live-table") == [] and browser.js("return sessionStorage.length") == 0
    browser.screenshot("signin")

    key = app.keys["console"]
    browser.find("#key-input").send_keys(key)
    browser.find("#key-form button[type=submit]").click()
    browser.wait(lambda: browser.shown("#tabs") and browser.shown("#view-status"), what="the signed-in page")
    assert browser.js(f"return sessionStorage.getItem('{KEY_STORAGE}')") == key
    assert browser.js("return localStorage.length") == 0 and browser.js("return document.cookie") == ""
    assert not browser.shown("#signin") and not browser.shown("#key-form")
    assert browser.text("#key-who") == f"key {key[:21]}…"
    urls = browser.js("return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]")
    assert not [u for u in urls if key in u or key[:20] in u]
    browser.drain_log()


def test_new_transfers_appear_within_10_s_and_a_filter_narrows_the_stream(app, browser, expected):
    browser.go("live")
    browser.wait(lambda: browser.text("#live-state") == "live", what="a live subscription")
    start = app.status()["next_ledger"]  # the next ledger the node will close
    app.close_ledgers(start + 1)
    closed = time.monotonic()
    want = [f"{r['ledger_sequence']}:{r['event_index']}" for s in (start + 1, start) for r in reversed(expected[s])]
    browser.wait(lambda: [r["key"] for r in browser.rows("#live-table")][:len(want)] == want, timeout=10,
                 what=f"the transfers of ledgers {start}-{start + 1}")
    assert time.monotonic() - closed < 10
    shown = browser.rows("#live-table")
    by_key = {f"{r['ledger_sequence']}:{r['event_index']}": r for s in (start, start + 1) for r in expected[s]}
    for row in shown[:len(want)]:
        event = by_key[row["key"]]
        assert (row["amountRaw"], row["type"], row["from"], row["to"]) == (
            event["amount_raw"], event["event_topic"], event["from"] or "", event["to"] or "")
    browser.wait(lambda: float(browser.text("#live-rate").split()[0]) > 0, timeout=5, what="a rate above 0")
    assert browser.js("return Math.max(...obsrvrConsole.charts.rate.data[1])") > 0
    app.close_ledgers(start + 3, pause=2.0)  # two more, for the screenshot's rate line
    browser.wait(lambda: browser.rows("#live-table")[0]["key"].startswith(f"{start + 3}:"), timeout=10,
                 what=f"ledger {start + 3}")
    browser.screenshot("live")

    # A filter: transfers of the account busiest in the ledgers still to close.
    start += 2
    later = range(start + 2, start + 10)
    account = Counter(a for s in later for r in expected[s] if r["event_topic"] == "transfer"
                      for a in (r["from"], r["to"])).most_common(1)[0][0]

    def matching(ledgers) -> list[str]:
        return [f"{r['ledger_sequence']}:{r['event_index']}" for s in reversed(ledgers) for r in reversed(expected[s])
                if r["event_topic"] == "transfer" and account in (r["from"], r["to"])]

    browser.find("#live-filters input[value=transfer]").click()
    browser.find("#live-filters input[name=accounts]").send_keys(account)
    browser.find("#live-apply").click()
    browser.wait(lambda: browser.text("#live-state") == "live", what="the filtered subscription")
    assert browser.rows("#live-table") == []
    app.close_ledgers(start + 5)
    want = matching(range(start + 2, start + 6))
    assert want, "the account moves tokens in these ledgers"
    browser.wait(lambda: [r["key"] for r in browser.rows("#live-table")] == want, timeout=10,
                 what="the filtered transfers")
    for row in browser.rows("#live-table"):
        assert row["type"] == "transfer" and account in (row["from"], row["to"])
    browser.screenshot("live-filtered")

    # Paused, nothing arrives; resumed, the ledgers closed meanwhile come, once each.
    browser.find("#live-pause").click()
    assert browser.text("#live-state") == "paused"
    app.close_ledgers(start + 9)
    wait_for(lambda: app.status()["next_ledger"] > start + 9, timeout=60, what="the follower past them", interval=0.3)
    time.sleep(1)
    assert [r["key"] for r in browser.rows("#live-table")] == want
    browser.screenshot("live-paused")
    browser.find("#live-pause").click()
    want = matching(later)
    browser.wait(lambda: [r["key"] for r in browser.rows("#live-table")] == want, timeout=15,
                 what="the transfers closed while paused")
    assert browser.text("#live-state") == "live"

    # A subscription the app refuses (a minimum beyond i128) is reported and not retried.
    browser.find("#live-filters input[name=min_amount]").send_keys("9" * 40)
    browser.find("#live-apply").click()
    browser.wait(lambda: browser.text("#live-state") == "refused: change the filters", what="the refusal")
    assert "min_amount must be within the i128 range" in browser.text("#banner")
    time.sleep(3)  # no reconnection loop
    assert browser.text("#live-state") == "refused: change the filters"
    browser.js("document.querySelector('#live-filters').reset()")
    browser.find("#live-apply").click()
    browser.wait(lambda: browser.text("#live-state") == "live", what="the unfiltered stream again")
    assert not browser.shown("#banner")
    browser.drain_log()


def _points(rows: list[dict], key: str, event_type: str) -> dict[str, dict[int, float]]:
    """What the volume chart must plot: per asset, period (Unix s) -> volume in units, summed exactly."""
    sums: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        if row["event_topic"] == event_type:
            moment = dt.datetime.fromisoformat(row[key].replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            sums[row["asset"] or row["contract_id"]][int(moment.timestamp())] += int(row["volume_raw"])
    return {asset: {t: float(v) * 1e-7 for t, v in points.items()} for asset, points in sums.items()}


def _assert_same_points(plotted: dict, want: dict, rel: float = 1e-12) -> None:
    assert plotted.keys() == want.keys()
    for asset, points in want.items():
        assert plotted[asset].keys() == points.keys(), asset
        assert plotted[asset] == pytest.approx(points, rel=rel), asset


def _plotted(browser: Browser, name: str) -> dict[str, dict[int, float]]:
    chart = browser.js("const c = obsrvrConsole.charts[arguments[0]]; return {keys: c.keys, data: c.data}", name)
    xs = chart["data"][0]
    return {key: {int(x): v for x, v in zip(xs, values, strict=True) if v is not None}
            for key, values in zip(chart["keys"], chart["data"][1:], strict=True)}


def test_the_volume_charts_plot_the_numbers_of_analytics(app, browser):
    browser.go("volume")
    browser.wait(lambda: browser.js("return document.querySelector('#view-volume').dataset.state") == "ready",
                 what="the default window's analytics")  # the 24 h up to the newest ledger
    browser.js("""const f = document.querySelector('#volume-form');
                  f.elements.since.value = '2026-01-01T00:00'; f.elements.until.value = '2026-01-03T00:00';
                  f.elements.event_type.value = 'transfer';""")
    browser.find("#volume-apply").click()
    browser.wait(lambda: browser.js("const v = obsrvrConsole.views.volume; return v.root.dataset.state === 'ready' "
                                    "&& v.query.since === '2026-01-01T00:00:00Z'"), what="the chosen window")
    query = browser.js("return obsrvrConsole.views.volume.query")
    assert query == {"since": "2026-01-01T00:00:00Z", "until": "2026-01-03T00:00:00Z", "top": 10}
    analytics = app.get("/v1/analytics", **query).json()

    hourly = _points(analytics["asset_volume_hourly"], "hour", "transfer")
    _assert_same_points(_plotted(browser, "volume-hourly"), hourly)
    assert sum(len(p) for p in hourly.values()) > 20
    daily = _points(analytics["asset_volume_daily"], "date", "transfer")
    _assert_same_points(_plotted(browser, "volume-daily"), daily)
    assert max(len(p) for p in daily.values()) == 2  # two days

    counts = Counter()
    for row in analytics["event_type_counts"]:
        counts[row["event_topic"]] += row["events"]
    bars = browser.js("const c = obsrvrConsole.charts['event-types']; return c.data[1]")
    assert bars == [counts[t] for t in sorted(counts)]
    assert [r["type"] for r in browser.rows("#volume-types-table")] == sorted(counts)
    assert [r["key"] for r in browser.rows("#volume-largest")] == [
        f"{r['ledger_sequence']}:{r['event_index']}" for r in analytics["largest_transfers"]]
    browser.screenshot("volume")

    browser.js("const s = document.querySelector('#volume-form').elements.event_type;"
               "s.value = ''; s.dispatchEvent(new Event('change'))")  # every type, summed
    every = defaultdict(dict)
    for event_type in counts:
        for asset, points in _points(analytics["asset_volume_hourly"], "hour", event_type).items():
            for t, v in points.items():
                every[asset][t] = every[asset].get(t, 0) + v
    _assert_same_points(_plotted(browser, "volume-hourly"), every, rel=1e-9)
    browser.drain_log()


def test_an_account_lookup_shows_the_rows_of_rest_and_links_its_transactions_and_ledgers(app, browser, expected):
    committed = app.status()["committed_through"]
    account = Counter(a for s in range(2, committed + 1) for r in expected[s]
                      for a in (r["from"], r["to"]) if a).most_common(1)[0][0]
    browser.go("lookup")
    browser.wait(lambda: browser.shown("#lookup-form"), what="the lookup form")
    browser.find("#lookup-form input[name=value]").send_keys(account)
    browser.find("#lookup-go").click()

    def page_shown() -> list[str]:
        browser.wait(lambda: browser.js("return document.querySelector('#view-lookup').dataset.state") == "ready",
                     what="a lookup")
        return [r["key"] for r in browser.rows("#lookup-table")]

    browser.wait(lambda: browser.js("return location.hash") == f"#lookup/account/{account}", what="the address")
    first = app.get("/v1/token-transfers", account=account, limit=50).json()
    assert page_shown() == _keys(first["rows"]) and first["next_cursor"]
    assert [r["amountRaw"] for r in browser.rows("#lookup-table")] == [r["amount_raw"] for r in first["rows"]]
    assert browser.text("#lookup-title") == f"Transfers of account {account}"
    browser.screenshot("lookup-account")
    browser.find("#lookup-next").click()
    second = app.get("/v1/token-transfers", account=account, limit=50, cursor=first["next_cursor"]).json()
    browser.wait(lambda: [r["key"] for r in browser.rows("#lookup-table")] == _keys(second["rows"]),
                 what="the second page")
    browser.find("#lookup-prev").click()
    browser.wait(lambda: [r["key"] for r in browser.rows("#lookup-table")] == _keys(first["rows"]),
                 what="the first page again")

    row = first["rows"][0]
    browser.find(f"#lookup-table tbody tr a[href='#lookup/tx/{row['transaction_hash']}']").click()
    browser.wait(lambda: browser.text("#lookup-title") == f"Transaction {row['transaction_hash']}",
                 what="the transaction page")
    in_tx = [r for r in _rest_rows(app, start_ledger=row["ledger_sequence"], end_ledger=row["ledger_sequence"])
             if r["transaction_hash"] == row["transaction_hash"]]
    assert page_shown() == _keys(in_tx)
    details = browser.js("return Object.fromEntries([...document.querySelectorAll('#lookup-details dt')]"
                         ".map(dt => [dt.textContent, dt.nextElementSibling.textContent]))")
    tx = app.get(f"/v1/transactions/{row['transaction_hash']}").json()
    assert details["transaction_hash"] == tx["transaction_hash"]
    assert details["ledger_sequence"] == str(tx["ledger_sequence"]) == str(row["ledger_sequence"])
    browser.screenshot("lookup-transaction")

    browser.find(f"#lookup-details a[href='#lookup/ledger/{row['ledger_sequence']}']").click()
    browser.wait(lambda: browser.text("#lookup-title") == f"Ledger {row['ledger_sequence']}", what="the ledger page")
    in_ledger = app.get("/v1/token-transfers", start_ledger=row["ledger_sequence"], end_ledger=row["ledger_sequence"],
                        limit=50).json()
    assert page_shown() == _keys(in_ledger["rows"])
    assert browser.js("return document.querySelector('#lookup-details dd').textContent") == str(row["ledger_sequence"])
    browser.screenshot("lookup-ledger")
    browser.drain_log()


def test_the_status_view_shows_the_follower_breaker_readiness_and_the_tables(app, browser):
    wait_for(lambda: (app.status().get("maintenance") or {}).get("runs"), timeout=60, what="a maintenance run",
             interval=0.5)
    browser.go("status")
    browser.wait(lambda: browser.js("return !!obsrvrConsole.views.status.health?.follower?.maintenance?.runs"),
                 what="a status with a maintenance run")
    health = browser.js("return obsrvrConsole.views.status.health")
    browser.wait(lambda: browser.js("return document.querySelector('#status-cards [data-name=ready] .value')"
                                    ".textContent") == "ready", what="the ready card")
    cards = browser.js("return Object.fromEntries([...document.querySelectorAll('#status-cards .card')]"
                       ".map(c => [c.dataset.name, c.querySelector('.value').textContent]))")
    health = browser.js("return obsrvrConsole.views.status.health")  # what the page rendered
    follower = health["follower"]
    assert cards["follower"] == follower["state"] == "live"
    assert cards["lag"] == f"{follower['lag']} ledgers"
    assert cards["circuit_breaker"].startswith("closed") and follower["breaker"] == "closed"
    assert cards["committed_through"] == str(follower["committed_through"])
    tables = browser.js("return Object.fromEntries([...document.querySelectorAll('#status-tables dd')]"
                        ".map(d => [d.dataset.name, d.textContent]))")
    maintenance = follower["maintenance"]
    assert set(tables["latest versions"].split(", ")) == {f"{t} v{v}" for t, v in maintenance["versions"].items()}
    assert "token_transfers v" in tables["latest versions"]
    assert tables["last compaction"] == f"{maintenance['last_run']} (run {maintenance['runs']})"
    assert {r["dependency"] for r in browser.rows("#status-bulkheads")} == {"rpc", "lake"}
    browser.screenshot("status")
    browser.drain_log()


def test_views_find_their_parts_from_one_list_and_make_the_event_type_choices_from_one(app, browser):
    """view.js: a view's parts are `#<view>-<part>`, looked up once (a missing one fails naming its
    id); the live checkboxes and the volume choice are made from the one EVENT_TYPES list."""
    found = browser.js("""return import(new URL('console/view.js', document.baseURI)).then((view) => {
        const root = document.querySelector('#view-lookup');
        const ui = view.parts(root, 'lookup', ['rows-title', 'prev']);
        let error = null;
        try { view.parts(root, 'lookup', ['title', 'nothing']); } catch (e) { error = e.message; }
        return {names: Object.keys(ui), ids: Object.values(ui).map((e) => e.id), error, types: view.EVENT_TYPES};
    })""")
    types = found.pop("types")
    assert found == {"names": ["rowsTitle", "prev"], "ids": ["lookup-rows-title", "lookup-prev"],
                     "error": "console: index.html has no #lookup-nothing"}
    assert types == ["transfer", "mint", "burn", "clawback", "fee"]
    assert browser.js("return [...document.querySelectorAll('#live-filters input[name=event_types]')]"
                      ".map((e) => e.value)") == types
    assert browser.js("const s = document.querySelector('#volume-form').elements.event_type;"
                      "return [[...s.options].map((o) => o.value), [...s.options].filter((o) => o.defaultSelected)"
                      ".map((o) => o.value)]") == [["", *types], ["transfer"]]


def test_the_browser_logged_no_error_and_no_csp_violation_and_a_wrong_key_is_refused(app, browser):
    browser.js("console.warn('obsrvr-test: log check')")  # the log is really read: this must be in it
    browser.drain_log()
    assert any("obsrvr-test: log check" in e["message"] for e in browser.log)
    assert _severe(browser.log) == []
    assert browser.js("return obsrvrConsole.violations") == []

    browser.find("#key-forget").click()
    browser.wait(lambda: browser.shown("#signin"), what="the sign-in view")
    assert browser.js("return sessionStorage.length") == 0
    browser.find("#key-input").send_keys(app.keys["wrong"])
    browser.find("#key-form button[type=submit]").click()
    browser.wait(lambda: browser.text("#banner").startswith("The key was refused"), what="the refusal")
    assert browser.shown("#signin") and not browser.shown("#tabs") and not browser.shown("#view-live")
    assert browser.rows("#live-table") == [] and browser.js("return sessionStorage.length") == 0
    browser.screenshot("refused")
    refused = _severe(browser.drain_log())  # the one 401 the browser reports, nothing else
    assert len(refused) == 1 and "401" in refused[0] and "/health" in refused[0], refused

    # A violation would have been seen: an inline script, which the CSP blocks.
    browser.js("const s = document.createElement('script'); s.textContent = 'window.ran = 1'; document.body.append(s)")
    browser.wait(lambda: browser.js("return obsrvrConsole.violations.length") == 1, what="the violation report")
    assert browser.js("return window.ran") is None
    assert any("Content Security Policy" in m for m in _severe(browser.drain_log()))


def test_the_console_files_the_app_serves_are_the_checked_npm_package(app):
    """uPlot is fetched by `npm ci` (the lock's sha512) and each served file matches vendor.json's sha256."""
    recorded = json.loads((VENDOR.parent / "vendor.json").read_text())
    package = json.loads((VENDOR.parent / "package.json").read_text())
    lock = json.loads((VENDOR.parent / "package-lock.json").read_text())
    library = charting_library()
    assert package["dependencies"] == {library["name"]: library["version"]}  # an exact version, no range
    locked = lock["packages"][f"node_modules/{library['name']}"]
    assert locked["version"] == library["version"] and locked["integrity"].startswith("sha512-")
    assert locked["license"] == library["license"] == "MIT"
    for name, digest in recorded["files"].items():
        served = requests.get(f"{app.base}/console/vendor/{name}", verify=str(app.tls.ca_cert), timeout=30)
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == digest, name
    license_text = requests.get(f"{app.base}/console/vendor/uPlot.LICENSE.txt", verify=str(app.tls.ca_cert),
                                timeout=30).text
    assert "MIT License" in license_text and "Leon Sorokin" in license_text
    page = requests.get(f"{app.base}/", verify=str(app.tls.ca_cert), timeout=30).text
    assert f"uPlot {library['version']} (MIT license)" in page


class _QuietFollower:
    """A follower that has nothing new: enough for the page's views in a server without Ray."""

    async def status(self) -> dict:
        return {"state": "live", "next_ledger": 2, "committed_through": None, "lag": 0, "breaker": "closed"}

    async def after(self, ledger: int, timeout: float) -> list:
        await asyncio.sleep(min(timeout, 1.0))
        return []

    async def recent(self, after: int | None):
        from obsrvr_ray.schema import TOKEN_TRANSFERS

        return TOKEN_TRANSFERS.empty_table()


def test_dev_mode_opens_the_page_without_a_key_on_loopback(browser, tmp_path):
    """`--dev` (authentication off, loopback only): the page asks for no key and streams at once."""
    from obsrvr_ray.query import TableReader
    from obsrvr_ray.security.security_settings import SecuritySettings
    from obsrvr_ray.serve.api import create_app
    from obsrvr_ray.serve.http_security import build_guard
    from tests.test_security_support import Server

    guard, routers, secure = build_guard(SecuritySettings(dev_mode=True, bind_hosts=("127.0.0.1",)))
    app = secure(create_app(TableReader(str(tmp_path)), _QuietFollower(), guard, extra_routers=routers))
    with Server(app) as server:
        page = requests.get(f"{server.url}/", timeout=10)
        assert page.headers["Content-Security-Policy"] == CONSOLE_CSP and 'content="off"' in page.text
        assert requests.get(f"{server.url}/console/console.js", timeout=10).headers["Content-Type"].startswith(
            "text/javascript")
        for missing in ("/console/nothing.js", "/console/../api.py", "/console/static/api.js"):
            assert requests.get(f"{server.url}{missing}", timeout=10).status_code == 404, missing
        browser.driver.get(f"{server.url}/")
        browser.wait(lambda: browser.shown("#view-live") and browser.text("#live-state") == "live",
                     what="the live view without a key")
        assert not browser.shown("#key-form") and not browser.shown("#signin") and browser.shown("#tabs")
        assert browser.text("#footer-mode").startswith("dev mode")
        assert browser.js("return sessionStorage.length") == 0
        assert _severe(browser.drain_log()) == []
        browser.driver.get("about:blank")  # closes the subscription before the server stops


def test_fetch_assets_refuses_files_that_differ_from_what_vendor_json_records(tmp_path):
    from obsrvr_ray.serve.console import fetch_assets

    assert fetch_assets.check() == []  # what make install put in vendor/
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR, copy)
    script = copy / "uPlot.esm.js"
    script.write_bytes(script.read_bytes().replace(b"uPlot", b"uPl0t", 1))
    (copy / "uPlot.min.css").unlink()
    problems = fetch_assets.check(copy)
    assert len(problems) == 2 and "uPlot.esm.js: sha256" in problems[0] and "uPlot.min.css is missing" in problems[1]


def test_the_package_data_ships_every_console_file():
    """pyproject's package-data globs cover the page, its scripts and the fetched uPlot with its license."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "obsrvr_ray.serve.console"]
    root = VENDOR.parent
    files = [p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and p.suffix != ".py" and not p.name.startswith(".") and "__pycache__" not in p.parts]
    assert "vendor/uPlot.LICENSE.txt" in files and "static/index.html" in files
    assert [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)] == []


# ---- monitoring: what the dashboards and alerts name is what the app and the backfill export ------


def test_dashboards_and_alerts_name_only_metrics_the_app_and_the_backfill_export(app, ray_head, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    scraped = app.get("/metrics", key="monitor").text
    live = exported_names(text_string_to_metric_families(scraped))
    metrics_file = tmp_path / "backfill.prom"
    done = run_backfill(ray_head, "--source", str(app.lake), "--start", "2", "--end", "9", "--out",
                        str(tmp_path / "out"), "--tables", "token_transfers", "--batch-size", "8",
                        "--metrics-file", str(metrics_file))
    assert done.returncode == 0, done.stdout + done.stderr
    backfill = exported_names(text_string_to_metric_families(metrics_file.read_text()))
    assert "follower_lag_ledgers" in live and "ledgers_planned" in backfill  # the two really were read

    exported = {"live": live, "backfill": backfill}
    checked = 0
    for path in DASHBOARDS:
        board = load_dashboard(path)
        component = "live" if "live" in board["uid"] else "backfill"
        for where, expr in dashboard_queries(board):
            names = metric_names(expr)
            assert names and names <= exported[component], f"{where}: {sorted(names - exported[component])}"
            checked += 1
    for rule in alert_rules():
        (component,) = set(re.findall(r'obsrvr_component="(\w+)"', rule["expr"]))
        names = metric_names(rule["expr"])
        assert names and names <= exported[component], f"{rule['alert']}: {sorted(names - exported[component])}"
        checked += 1
    assert checked > 40
