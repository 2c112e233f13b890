// Charts with uPlot (vendor/, fetched from npm by `make install`: obsrvr_ray/serve/console/fetch_assets.py).
// Without it the page still works: every chart has a table beside it.

import { compact } from "./format.js";

let uPlot = null;
try {
  uPlot = (await import("./vendor/uPlot.esm.js")).default;
} catch {
  uPlot = null;
}

export const available = uPlot !== null;

// Every chart on the page by name, with the data it plots: what tests read back.
export const charts = {};

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
                 "#475569", "#ea580c", "#0d9488", "#9333ea"];

function width(container) {
  return Math.max(320, container.clientWidth || container.parentElement?.clientWidth || 800);
}

function utcDate(ts) {
  return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
}

function place(name, container, options, data) {
  const old = charts[name];
  if (old) old.destroy();
  container.replaceChildren();
  if (!uPlot) {
    container.textContent = "Charts need uPlot in console/vendor/ (make install fetches it).";
    container.classList.add("nochart");
    return null;
  }
  const chart = new uPlot({ width: width(container), ...options }, data, container);
  chart.root.dataset.chart = name;
  charts[name] = chart;
  return chart;
}

/** Lines over time (x: Unix seconds, UTC), one series per key; points shown (few per series). */
export function timeLines(name, container, { xs, series, height = 280, yLabel = "" }) {
  const chart = place(name, container, {
    height,
    tzDate: utcDate,
    scales: { x: { time: true } },
    series: [{ label: "time (UTC)" }, ...series.map((s, i) => ({
      label: s.label,
      stroke: PALETTE[i % PALETTE.length],
      width: 2,
      points: { show: true, size: 6 },
      spanGaps: false,
      value: (u, v) => (v === null || v === undefined ? "–" : compact(v)),
    }))],
    axes: [{}, { label: yLabel, size: 70, values: (u, ticks) => ticks.map(compact) }],
  }, [xs, ...series.map((s) => s.values)]);
  if (chart) chart.keys = series.map((s) => s.key); // what each series is (labels are short forms)
  return chart;
}

/** The events/s line of the live stream: a fixed window of seconds, updated in place. */
export function rateLine(name, container) {
  return place(name, container, {
    height: 120,
    tzDate: utcDate,
    legend: { show: false },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.2)] } },
    series: [{}, { label: "events/s", stroke: PALETTE[0], fill: "rgba(37, 99, 235, 0.12)", width: 2 }],
    axes: [{}, { size: 50, values: (u, ticks) => ticks.map(compact) }],
  }, [[], []]);
}

/** Bars, one per category. */
export function bars(name, container, { labels, values, height = 200 }) {
  const xs = labels.map((_, i) => i);
  const builder = uPlot ? uPlot.paths.bars({ size: [0.6, 80] }) : null;
  return place(name, container, {
    height,
    legend: { show: false },
    scales: { x: { time: false, range: () => [-0.5, labels.length - 0.5] }, y: { range: (u, min, max) => [0, max * 1.1 || 1] } },
    series: [{}, { label: "events", stroke: PALETTE[0], fill: "rgba(37, 99, 235, 0.55)", paths: builder,
                   points: { show: false } }],
    axes: [
      { splits: () => xs, values: (u, ticks) => ticks.map((i) => labels[i] ?? ""), grid: { show: false } },
      { size: 60, values: (u, ticks) => ticks.map(compact) },
    ],
  }, [xs, values]);
}

export function resizeAll() {
  for (const chart of Object.values(charts)) {
    const container = chart.root.parentElement;
    if (container && container.offsetParent !== null) chart.setSize({ width: width(container), height: chart.height });
  }
}
