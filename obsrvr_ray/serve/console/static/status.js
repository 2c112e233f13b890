// Status: /health every few seconds while shown: the follower's state and lag, readiness, the
// RPC circuit breaker and the bulkheads, and the tables' latest versions and last compaction
// (the follower's scheduled maintenance).

import { get } from "./api.js";
import { el, fill } from "./format.js";
import { View } from "./view.js";

const REFRESH = 5000;
const BREAKER = { closed: "closed (calls go through)", half_open: "half open (trying again)",
                  open: "open (RPC calls stopped)" };

function card(name, value, tone, detail) {
  return el("div", { className: `card ${tone || ""}`, dataset: { name } },
    el("div", { className: "label", text: name.replaceAll("_", " ") }),
    el("div", { className: "value", text: value === null || value === undefined ? "–" : String(value) }),
    detail ? el("div", { className: "detail", text: detail }) : null);
}

export class StatusView extends View {
  constructor(root, context) {
    super(root, context, "status", ["updated", "cards", "tables", "bulkheads"]);
    this.timer = null;
    this.health = null;
  }

  show() {
    this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => (this.root.hidden ? clearInterval(this.timer) : this.refresh()), REFRESH);
  }

  async refresh() {
    try {
      this.health = await get("health");
    } catch (error) {
      this.banner(`status: ${error.message}`);
      return;
    }
    this.render(this.health);
    this.root.dataset.state = "ready";
  }

  render(health) {
    const f = health.follower || {};
    const processed = f.next_ledger ? f.next_ledger - 1 : null;
    const breaker = f.breaker || "closed";
    fill(this.ui.cards, [
      card("ready", health.ready ? "ready" : "not ready", health.ready ? "good" : "bad", health.reason),
      card("follower", f.state || "not answering", f.state === "live" ? "good" : f.state ? "warn" : "bad",
           f.last_error || null),
      card("lag", f.lag === null || f.lag === undefined ? null : `${f.lag} ledgers`, f.lag > 5 ? "warn" : "good",
           f.network_latest ? `network at ${f.network_latest}` : null),
      card("processed_through", processed, null, `${f.ledgers_processed ?? 0} ledgers since start`),
      card("committed_through", f.committed_through, null,
           health.dataset_last_ledger ? `dataset ends at ${health.dataset_last_ledger}` : "dataset empty"),
      card("circuit_breaker", BREAKER[breaker] || breaker, breaker === "closed" ? "good" : "bad"),
      card("failures", f.failures ?? 0, f.failures ? "warn" : "good",
           `${f.gaps_filled ?? 0} gaps filled, ${f.lake_fallbacks ?? 0} from the lake`),
      card("websocket_connections", health.websocket_connections, null, "on this replica"),
    ]);
    fill(this.ui.bulkheads.tBodies[0], Object.entries(f.bulkheads || {}).map(([name, b]) =>
      el("tr", { dataset: { dependency: name } }, el("td", { text: name }), el("td", { className: "num", text: String(b.in_use) }),
        el("td", { className: "num", text: String(b.limit) }), el("td", { className: "num", text: String(b.rejected) }))));
    const m = f.maintenance || {};
    const versions = Object.entries(m.versions || {}).map(([table, version]) => `${table} v${version}`).join(", ");
    const items = [
      ["latest versions", versions || "not yet recorded (after the first scheduled run)"],
      ["last compaction", m.last_run ? `${m.last_run} (run ${m.runs})` : "no scheduled run yet"],
      ["files compacted", String(m.files_compacted ?? 0)],
      ["rows retired", String(m.rows_retired ?? 0)],
      ["files vacuumed", String(m.files_vacuumed ?? 0)],
    ];
    if (m.last_error) items.push(["last maintenance error", m.last_error]);
    this.ui.tables.replaceChildren(
      ...items.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value, dataset: { name } })]));
    this.ui.updated.textContent =
      `Updated ${new Date().toISOString().slice(11, 19)} UTC, every ${REFRESH / 1000} s`;
  }
}
