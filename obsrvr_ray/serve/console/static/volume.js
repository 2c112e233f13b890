// Volume: /v1/analytics over a window the user picks. Volume per asset per hour and per day (one
// line per asset, for one event type or all of them summed), events by type, the largest transfers.
// Volumes are summed exactly from volume_raw (base units, text) and drawn as units (x 1e-7).

import { get } from "./api.js";
import { bars, timeLines } from "./charts.js";
import { assetLabel, assetLink, accountLink, compact, el, fill, formatAmount, ledgerLink, txLink, utc } from "./format.js";
import { EVENT_TYPES, setOptions, View } from "./view.js";

const HOUR = 3600;

/** "2026-01-01T05:00" (a datetime-local value, read as UTC) <-> Unix seconds. */
function parseLocal(value) {
  return value ? Date.parse(`${value}:00Z`) / 1000 : null;
}

function formatLocal(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16);
}

function iso(seconds) {
  return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
}

/**
 * Rows of asset_volume_hourly or _daily -> {xs, series: [{key, label, values}]}: one series per
 * asset (key: its `asset`, or contract id; label: a short form), summed over event types unless `eventType` is given,
 * biggest total first. Missing (period, asset) pairs are null: no line through them.
 */
export function volumeSeries(rows, timeKey, eventType) {
  const chosen = rows.filter((r) => !eventType || r.event_topic === eventType);
  const times = [...new Set(chosen.map((r) => Date.parse(r[timeKey]) / 1000))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const byAsset = new Map();
  for (const row of chosen) {
    const key = row.asset || row.contract_id;
    if (!byAsset.has(key)) byAsset.set(key, { label: key, row, sums: new Array(times.length).fill(null), total: 0n });
    const entry = byAsset.get(key);
    const i = index.get(Date.parse(row[timeKey]) / 1000);
    entry.sums[i] = (entry.sums[i] ?? 0n) + BigInt(row.volume_raw);
    entry.total += BigInt(row.volume_raw);
  }
  const series = [...byAsset.values()]
    .sort((a, b) => (a.total === b.total ? a.label.localeCompare(b.label) : a.total > b.total ? -1 : 1))
    .map((e) => ({ key: e.label, label: assetLabel(e.row),
                   values: e.sums.map((s) => (s === null ? null : Number(s) * 1e-7)) }));
  return { xs: times, series };
}

export class VolumeView extends View {
  constructor(root, context) {
    super(root, context, "volume", ["form", "window", "hourly", "daily", "types", "types-table", "largest",
                                    "hourly-table"]);
    setOptions(this.ui.form.elements.event_type, [["", "every type"], ...EVENT_TYPES.map((type) => [type, type])],
               "transfer");
    this.newest = null; // close time (Unix s) of the newest committed ledger
    this.query = null; // the parameters of the analytics shown
    this.data = null;
    this.ui.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
    for (const button of this.ui.form.querySelectorAll("[data-hours]")) {
      button.addEventListener("click", () => this.preset(Number(button.dataset.hours)));
    }
    this.ui.form.elements.event_type.addEventListener("change", () => this.data && this.render());
  }

  async show() {
    if (this.query) return;
    await this.preset(24);
  }

  /** The close time of the newest ledger in the dataset (else now: an empty dataset, or one
   * without the ledgers table). */
  async newestClose() {
    const health = await get("health");
    const last = health.dataset_last_ledger;
    if (last) {
      try {
        return Date.parse((await get(`v1/ledgers/${last}`)).closed_at) / 1000;
      } catch (error) {
        if (error.status !== 404) throw error;
      }
    }
    return Date.now() / 1000;
  }

  async preset(hours) {
    try {
      this.newest = await this.newestClose();
    } catch (error) {
      this.banner(`volume: ${error.message}`);
      return;
    }
    const until = Math.ceil((this.newest + 1) / 60) * 60; // the newest ledger included, whole minutes
    this.ui.form.elements.until.value = formatLocal(until);
    this.ui.form.elements.since.value = formatLocal(until - hours * HOUR);
    await this.load();
  }

  async load() {
    const since = parseLocal(this.ui.form.elements.since.value);
    const until = parseLocal(this.ui.form.elements.until.value);
    if (since === null || until === null || since >= until) {
      this.banner("volume: pick a window with From before To");
      return;
    }
    const query = { since: iso(since), until: iso(until), top: 10 };
    this.root.dataset.state = "loading";
    try {
      this.data = await get("v1/analytics", query);
    } catch (error) {
      this.root.dataset.state = "error";
      this.banner(`volume: ${error.message}`);
      return;
    }
    this.banner(null);
    this.query = query;
    this.render();
    this.root.dataset.state = "ready";
  }

  render() {
    const eventType = this.ui.form.elements.event_type.value;
    const kind = eventType || "every type";
    this.ui.window.textContent = `${utc(this.query.since)} to ${utc(this.query.until)} UTC · ${kind}`;
    const hourly = volumeSeries(this.data.asset_volume_hourly, "hour", eventType);
    const daily = volumeSeries(this.data.asset_volume_daily, "date", eventType);
    timeLines("volume-hourly", this.ui.hourly, { ...hourly, yLabel: "volume (units)" });
    timeLines("volume-daily", this.ui.daily, { ...daily, yLabel: "volume (units)" });

    const perType = new Map();
    for (const row of this.data.event_type_counts) perType.set(row.event_topic, (perType.get(row.event_topic) || 0) + row.events);
    const types = [...perType.keys()].sort();
    bars("event-types", this.ui.types, { labels: types, values: types.map((t) => perType.get(t)) });
    fill(this.ui.typesTable.tBodies[0], types.map((t) =>
      el("tr", { dataset: { type: t } }, el("td", { text: t }), el("td", { className: "num", text: String(perType.get(t)) }))));

    fill(this.ui.largest.tBodies[0], this.data.largest_transfers.map((row) =>
      el("tr", { dataset: { key: `${row.ledger_sequence}:${row.event_index}` } },
        el("td", {}, assetLink(row)), el("td", { className: "num", text: formatAmount(row.amount_raw) }),
        el("td", {}, accountLink(row.from)), el("td", {}, accountLink(row.to)),
        el("td", {}, ledgerLink(row.ledger_sequence)), el("td", {}, txLink(row.transaction_hash)))));

    const hourlyRows = this.data.asset_volume_hourly.filter((r) => !eventType || r.event_topic === eventType);
    fill(this.ui.hourlyTable.tBodies[0], hourlyRows.map((row) =>
      el("tr", {}, el("td", { text: utc(row.hour) }), el("td", { text: assetLabel(row), title: row.asset }),
        el("td", { text: row.event_topic }), el("td", { className: "num", text: String(row.events) }),
        el("td", { className: "num", text: formatAmount(row.volume_raw), title: compact(row.volume) }))));
  }
}
