// Lookups: every transfer of an account or an asset (cursor pages of /v1/token-transfers), a
// transaction (/v1/transactions/{hash} and its transfers) or a ledger (/v1/ledgers/{n} and its
// transfers, paged). Addresses (#lookup/<kind>/<value>) can be bookmarked: they hold no key.

import { get } from "./api.js";
import { el, fill, ledgerLink, link, shorten, transferRow } from "./format.js";
import { setOptions, View } from "./view.js";

const fullAccountLink = (address) => link(`#lookup/account/${encodeURIComponent(address)}`, address);

const PAGE = 50;
const LONG = 96; // longer values (XDR blobs) are shortened in the details list
// The fields shown first; the others are under "Every field".
const SUMMARY = {
  tx: ["transaction_hash", "ledger_sequence", "closed_at", "account", "fee_account", "successful",
       "transaction_result_code", "fee_charged", "operation_count", "memo_type", "memo"],
  ledger: ["sequence", "closed_at", "ledger_hash", "previous_ledger_hash", "protocol_version", "transaction_count",
           "successful_transaction_count", "failed_transaction_count", "operation_count", "base_fee"],
};

// The form's choices: what `open` looks up (`auto`: the kind guessKind sees in the value).
const KINDS = { auto: "guess from the text", account: "account", asset: "asset", tx: "transaction", ledger: "ledger" };

export function guessKind(value) {
  if (/^\d+$/.test(value)) return "ledger";
  if (/^[0-9a-fA-F]{64}$/.test(value)) return "tx";
  if (value === "native" || value.includes(":")) return "asset";
  if (/^[GMCBL][A-Z2-7]{55}([A-Z2-7]{13})?$/.test(value)) return "account";
  return "asset"; // an asset code alone
}

export class LookupView extends View {
  constructor(root, context) {
    super(root, context, "lookup",
          ["form", "title", "details", "more", "all", "rows-title", "table", "pager", "prev", "page", "next"]);
    setOptions(this.ui.form.elements.kind, Object.entries(KINDS));
    this.params = null; // the query being paged
    this.cursors = [null]; // cursors[i] opens page i
    this.page = 0;
    this.nextCursor = null;
    this.ui.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = this.ui.form.elements.value.value.trim();
      if (!value) return;
      let kind = this.ui.form.elements.kind.value;
      if (kind === "auto") kind = guessKind(value);
      context.navigate(`lookup/${kind}/${encodeURIComponent(kind === "tx" ? value.toLowerCase() : value)}`);
    });
    this.ui.prev.addEventListener("click", () => this.turn(-1));
    this.ui.next.addEventListener("click", () => this.turn(1));
  }

  async open(kind, value) {
    this.ui.form.elements.kind.value = kind;
    this.ui.form.elements.value.value = value;
    this.ui.details.hidden = true;
    this.ui.details.replaceChildren();
    this.ui.more.hidden = true;
    this.ui.all.replaceChildren();
    this.ui.rowsTitle.hidden = true;
    this.ui.table.hidden = true;
    this.ui.pager.hidden = true;
    this.root.dataset.state = "loading";
    try {
      if (kind === "account") await this.paged(`Transfers of account ${value}`, { account: value });
      else if (kind === "asset") await this.paged(`Transfers of asset ${value}`, { asset: value });
      else if (kind === "tx") await this.transaction(value);
      else if (kind === "ledger") await this.ledger(Number(value));
      else throw new Error(`nothing to look up as ${kind}`);
      this.banner(null);
      this.root.dataset.state = "ready";
    } catch (error) {
      this.root.dataset.state = "error";
      this.ui.title.textContent = error.status === 404 ? `Not found: ${value}` : this.ui.title.textContent;
      this.banner(`lookup: ${error.message}`);
    }
  }

  async paged(title, params) {
    this.ui.title.textContent = title;
    this.params = params;
    this.cursors = [null];
    this.page = 0;
    await this.load();
  }

  async load() {
    const body = await get("v1/token-transfers", { ...this.params, limit: PAGE, cursor: this.cursors[this.page] });
    this.nextCursor = body.next_cursor;
    this.showRows(body.rows);
    this.ui.pager.hidden = false;
    this.ui.prev.disabled = this.page === 0;
    this.ui.next.disabled = !this.nextCursor;
    const first = this.page * PAGE + 1;
    this.ui.page.textContent = body.rows.length
      ? `page ${this.page + 1}: transfers ${first}–${first + body.rows.length - 1}`
      : "no transfers";
  }

  async turn(step) {
    if (step > 0 && !this.nextCursor) return;
    if (step > 0) this.cursors[this.page + 1] = this.nextCursor;
    this.page = Math.max(0, this.page + step);
    this.root.dataset.state = "loading";
    try {
      await this.load();
      this.root.dataset.state = "ready";
    } catch (error) {
      this.root.dataset.state = "error";
      this.banner(`lookup: ${error.message}`);
    }
  }

  showRows(rows) {
    fill(this.ui.table.tBodies[0], rows.map(transferRow));
    this.ui.rowsTitle.hidden = false;
    this.ui.table.hidden = false;
  }

  /** The summary fields of a transaction or ledger first, in order, then every field. */
  showDetails(record, kind) {
    const links = { ledger_sequence: ledgerLink, account: fullAccountLink, fee_account: fullAccountLink };
    const item = (name) => {
      const value = record[name];
      let shown = typeof value === "object" ? JSON.stringify(value) : String(value);
      const title = shown.length > LONG ? shown : undefined;
      if (title) shown = shorten(shown, 40);
      return [el("dt", { text: name }), el("dd", { title }, links[name] ? links[name](value) : shown)];
    };
    const present = (name) => record[name] !== null && record[name] !== undefined && record[name] !== "";
    this.ui.details.replaceChildren(...SUMMARY[kind].filter(present).flatMap(item));
    this.ui.all.replaceChildren(...Object.keys(record).filter(present).flatMap(item));
    this.ui.details.hidden = false;
    this.ui.more.hidden = false;
  }

  /** Every transfer of one ledger (all its pages), optionally of one transaction only. */
  async ledgerTransfers(sequence, txHash) {
    const rows = [];
    let cursor = null;
    do {
      const body = await get("v1/token-transfers", { start_ledger: sequence, end_ledger: sequence, limit: 1000, cursor });
      rows.push(...body.rows.filter((r) => !txHash || r.transaction_hash === txHash));
      cursor = body.next_cursor;
    } while (cursor);
    return rows;
  }

  async transaction(hash) {
    this.ui.title.textContent = `Transaction ${hash}`;
    const tx = await get(`v1/transactions/${hash}`);
    this.showDetails(tx, "tx");
    this.showRows(await this.ledgerTransfers(tx.ledger_sequence, hash));
  }

  async ledger(sequence) {
    this.ui.title.textContent = `Ledger ${sequence}`;
    const ledger = await get(`v1/ledgers/${sequence}`);
    this.showDetails(ledger, "ledger");
    await this.paged(`Ledger ${sequence}`, { start_ledger: sequence, end_ledger: sequence });
  }
}
