// Live transfers: a /v1/subscribe stream with filters, pause/resume and an events/s line.
//
// Pausing closes the subscription and remembers the stream's position (the last ledger the
// server delivered, from event frames and pongs); resuming subscribes again with
// from_ledger = position + 1, so the ledgers closed meanwhile are replayed and none is missed.

import { websocket } from "./api.js";
import { rateLine } from "./charts.js";
import { el, toBaseUnits, transferRow } from "./format.js";
import { EVENT_TYPES, View } from "./view.js";

const KEEP_ROWS = 200; // rows kept on the page, newest first
const RATE_WINDOW = 120; // seconds on the events/s line
const RATE_AVERAGE = 10; // seconds the events/s figure averages over
const PING_EVERY = 15_000; // ms; any message resets the server's idle timeout
const RECONNECT_AFTER = 2_000; // ms after a lost connection, doubling up to RECONNECT_MAX while it keeps failing
const RECONNECT_MAX = 60_000;

export class LiveView extends View {
  constructor(root, context) {
    super(root, context, "live",
          ["filters", "event-types", "pause", "state", "rate", "position", "rate-chart", "table", "empty"]);
    this.tbody = this.ui.table.tBodies[0];
    this.ui.eventTypes.append(...EVENT_TYPES.map((type) =>
      el("label", {}, el("input", { type: "checkbox", name: "event_types", value: type }), ` ${type}`)));
    this.ws = null;
    this.subscription = {};
    this.paused = false;
    this.position = null; // the last ledger the server delivered to this stream (matching or not)
    this.perSecond = new Map(); // unix second -> events received
    this.received = 0;
    this.pinger = null;
    this.reconnect = null;
    this.failures = 0; // connections lost in a row (reset once subscribed)
    this.refused = null; // the server's error for this subscription: it is not retried
    this.chart = null;
    this.ui.filters.addEventListener("submit", (event) => {
      event.preventDefault();
      this.apply();
    });
    this.ui.pause.addEventListener("click", () => (this.paused ? this.resume() : this.pause()));
    setInterval(() => this.tick(), 1000);
  }

  show() {
    if (!this.chart) this.chart = rateLine("rate", this.ui.rateChart);
    if (!this.ws && !this.paused) this.connect(null);
    this.tick();
  }

  /** The subscribe message from the form; Error (shown in the banner) for a bad minimum amount. */
  readFilters() {
    const data = new FormData(this.ui.filters);
    const list = (name) => String(data.get(name) || "").split(/[\s,]+/).filter(Boolean);
    const message = { event_types: data.getAll("event_types").map(String), assets: list("assets"),
                      accounts: list("accounts") };
    const min = String(data.get("min_amount") || "").trim();
    if (min) message.min_amount = toBaseUnits(min);
    return message;
  }

  apply() {
    let subscription;
    try {
      subscription = this.readFilters();
    } catch (error) {
      this.banner(error.message);
      return;
    }
    this.banner(null);
    this.subscription = subscription;
    this.position = null; // the new stream starts at the follower's newest ledger (its first pong says which)
    this.ui.position.textContent = "";
    this.tbody.replaceChildren();
    this.ui.empty.hidden = false;
    this.paused = false;
    this.ui.pause.textContent = "Pause";
    this.connect(null);
  }

  pause() {
    this.paused = true;
    this.ui.pause.textContent = "Resume";
    this.disconnect();
    this.setState("paused", "paused");
  }

  resume() {
    this.paused = false;
    this.ui.pause.textContent = "Pause";
    this.connect(this.position === null ? null : this.position + 1);
  }

  stop() {
    this.paused = false;
    this.disconnect();
    this.tbody.replaceChildren();
    this.position = null;
  }

  disconnect() {
    clearInterval(this.pinger);
    clearTimeout(this.reconnect);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.close(1000, "the console closed the subscription");
    }
  }

  connect(fromLedger) {
    this.disconnect();
    this.refused = null;
    this.setState("connecting", "connecting");
    const ws = websocket("v1/subscribe");
    this.ws = ws;
    ws.onopen = () => {
      const message = { action: "subscribe", ...this.subscription };
      if (fromLedger !== null) message.from_ledger = fromLedger;
      ws.send(JSON.stringify(message));
      this.pinger = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"action":"ping"}'),
                                PING_EVERY);
    };
    ws.onmessage = (message) => this.receive(JSON.parse(message.data));
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      if (this.refused) {
        this.setState("closed", "refused: change the filters");
        return;
      }
      const why = event.reason || (event.code === 1006 ? "the connection was lost or refused" : `code ${event.code}`);
      const wait = Math.min(RECONNECT_MAX, RECONNECT_AFTER * 2 ** this.failures);
      this.failures += 1;
      this.setState("closed", `closed: ${why}; reconnecting in ${Math.round(wait / 1000)} s`);
      this.reconnect = setTimeout(() => this.connect(this.position === null ? null : this.position + 1), wait);
    };
  }

  receive(frame) {
    if (frame.type === "subscribed") {
      this.failures = 0;
      this.setState("live", "live");
      this.ws?.send('{"action":"ping"}'); // the pong names the stream's position: a resume starts there
    } else if (frame.type === "events") {
      this.advance(frame.ledger);
      this.add(frame.events);
    } else if (frame.type === "pong") {
      if (Number.isInteger(frame.ledger)) this.advance(frame.ledger);
    } else if (frame.type === "error") { // the subscription itself was refused
      this.refused = frame.message;
      this.banner(`subscription refused: ${frame.message}`);
    } else if (frame.type === "closing" && !this.refused) {
      this.banner(`subscription closed by the app: ${frame.reason}`);
    }
  }

  advance(ledger) {
    if (this.position === null || ledger > this.position) this.position = ledger;
    this.ui.position.textContent = `through ledger ${this.position}`;
  }

  add(events) {
    const second = Math.floor(Date.now() / 1000);
    this.perSecond.set(second, (this.perSecond.get(second) || 0) + events.length);
    this.received += events.length;
    const rows = events.slice().reverse().map(transferRow); // newest first
    this.tbody.prepend(...rows);
    while (this.tbody.rows.length > KEEP_ROWS) this.tbody.lastElementChild.remove();
    this.ui.empty.hidden = this.tbody.rows.length > 0;
  }

  setState(kind, text) {
    this.ui.state.className = `pill ${kind}`;
    this.ui.state.textContent = text;
  }

  /** Events/s over the RATE_AVERAGE seconds before `second` (ledgers close every few seconds,
   * so a per-second count would be mostly zeros and spikes). */
  rateAt(second) {
    let events = 0;
    for (let s = second - RATE_AVERAGE; s < second; s++) events += this.perSecond.get(s) || 0;
    return events / RATE_AVERAGE;
  }

  /** Once a second: the events/s figure and line. */
  tick() {
    const now = Math.floor(Date.now() / 1000);
    for (const second of this.perSecond.keys()) {
      if (second < now - RATE_WINDOW - RATE_AVERAGE) this.perSecond.delete(second);
    }
    this.ui.rate.textContent = `${this.rateAt(now).toFixed(1)} events/s`;
    if (this.chart && this.root.offsetParent !== null) {
      const xs = [];
      const ys = [];
      for (let s = now - RATE_WINDOW; s <= now; s++) {
        xs.push(s);
        ys.push(this.rateAt(s));
      }
      this.chart.setData([xs, ys]);
    }
  }
}
