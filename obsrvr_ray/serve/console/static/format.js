// Formatting and DOM helpers shared by the views. Text goes in with textContent only (never
// innerHTML): every value on the page comes from the network.

export const DECIMALS = 7n; // amounts are in base units (stroops), shown with 7 decimals like `amount`
const SCALE = 10n ** DECIMALS;

/** "123456789" (base units, any size) -> "12.3456789", exactly. */
export function formatAmount(raw) {
  if (raw === null || raw === undefined || raw === "") return "";
  let value = BigInt(raw);
  const negative = value < 0n;
  if (negative) value = -value;
  const whole = (value / SCALE).toLocaleString("en-US");
  const fraction = (value % SCALE).toString().padStart(Number(DECIMALS), "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${fraction ? "." + fraction : ""}`;
}

/** "100.5" (units) -> "1005000000" (base units), exactly; Error when not a plain decimal. */
export function toBaseUnits(text) {
  const match = /^\s*(\d+)(?:\.(\d*))?\s*$/.exec(text);
  if (!match || (match[2] || "").length > Number(DECIMALS)) {
    throw new Error(`minimum amount: expected a number with at most ${DECIMALS} decimals, got "${text}"`);
  }
  return (BigInt(match[1]) * SCALE + BigInt((match[2] || "").padEnd(Number(DECIMALS), "0"))).toString();
}

/** A float volume as a short number: 1234567 -> "1.23M". */
export function compact(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "";
  return Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 }).format(value);
}

export function shorten(text, keep = 6) {
  if (!text || text.length <= keep * 2 + 1) return text || "";
  return `${text.slice(0, keep)}…${text.slice(-keep)}`;
}

/** "native" stays; a classic asset shows its code and a short issuer; a contract token its short id. */
export function assetLabel(row) {
  if (row.asset_code) return row.asset_issuer ? `${row.asset_code}:${shorten(row.asset_issuer, 4)}` : row.asset_code;
  return row.asset === "native" ? "native" : shorten(row.asset || row.contract_id || "", 6);
}

export function utc(text) {
  return text ? text.replace("T", " ").replace("Z", "") : "";
}

export function el(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function link(hash, text, title) {
  return el("a", { href: hash, text, title });
}

export function accountLink(address) {
  return address ? link(`#lookup/account/${encodeURIComponent(address)}`, shorten(address), address) : "";
}

export function ledgerLink(sequence) {
  return link(`#lookup/ledger/${sequence}`, String(sequence));
}

export function txLink(hash) {
  return link(`#lookup/tx/${hash}`, shorten(hash, 8), hash);
}

export function assetLink(row) {
  const asset = row.asset || row.contract_id;
  return asset ? link(`#lookup/asset/${encodeURIComponent(asset)}`, assetLabel(row), asset) : "";
}

/** One token-transfer row of the API as a table row; data-key = "ledger:event_index". */
export function transferRow(row) {
  const cell = (content, className) => el("td", { className }, content);
  return el("tr", { dataset: { key: `${row.ledger_sequence}:${row.event_index}`, amountRaw: row.amount_raw,
                               type: row.event_topic, asset: row.asset || row.contract_id || "",
                               from: row.from || "", to: row.to || "" } },
    cell(ledgerLink(row.ledger_sequence)),
    cell(utc(row.closed_at)),
    cell(el("span", { className: `tag ${row.event_topic}`, text: row.event_topic })),
    cell(assetLink(row)),
    cell(accountLink(row.from)),
    cell(accountLink(row.to)),
    cell(formatAmount(row.amount_raw), "num"),
    cell(txLink(row.transaction_hash)));
}

export function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}
