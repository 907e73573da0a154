// The four charts. Each Chart.js instance is built once; every snapshot rewrites its data
// arrays in place (same arrays, bounded length) and redraws without animation.

import { clock, clockSeconds, count, millis, parseTime, percent, rate } from "./format.js";

const HOUR_MS = 3600 * 1000;
const MAX_POINTS = 720; // one hour at a 5 s step; the snapshot carries far fewer
const MAX_CODES = 10; // status codes shown; the rest are summed into "other"

const COLORS = {
  text: "#c9d4df",
  grid: "rgba(201, 212, 223, 0.12)",
  rate: "#5aa9ff",
  p50: "#4cc38a",
  p95: "#f0b429",
  p99: "#ff7a6b",
  errors: "#ff6b81",
};

const STATUS_COLORS = {
  2: ["#3fb950", "#2ea043", "#56d364", "#238636"],
  3: ["#58a6ff", "#388bfd", "#79c0ff"],
  4: ["#d29922", "#e3b341", "#bb8009", "#f2cc60"],
  5: ["#f85149", "#da3633", "#ff7b72", "#b62324"],
  other: ["#8b949e"],
};

const TICK_MS = 10 * 60 * 1000;

/** Time ticks on whole ten minutes (Chart.js would count from the axis minimum). */
function alignTimeTicks(axis) {
  const ticks = [];
  for (let v = Math.ceil(axis.min / TICK_MS) * TICK_MS; v <= axis.max; v += TICK_MS) ticks.push({ value: v });
  axis.ticks = ticks;
}

// Axis labels: plain numbers, the unit is in the chart's caption.
const axisNumber = (v) => Number(v).toLocaleString("en-US", { maximumFractionDigits: 2 });

function lineOptions({ format, legend }) {
  return {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    parsing: false,
    normalized: true,
    interaction: { mode: "index", intersect: false },
    scales: {
      x: {
        type: "linear",
        ticks: { maxRotation: 0, callback: (v) => clock(v) },
        afterBuildTicks: alignTimeTicks,
        grid: { color: COLORS.grid },
      },
      y: {
        beginAtZero: true,
        grace: "5%",
        ticks: { maxTicksLimit: 6, callback: axisNumber },
        grid: { color: COLORS.grid },
      },
    },
    plugins: {
      legend: { display: legend, labels: { boxWidth: 12, boxHeight: 2 } },
      tooltip: {
        callbacks: {
          title: (items) => (items.length ? clockSeconds(items[0].parsed.x) : ""),
          label: (item) => `${item.dataset.label}: ${format(item.parsed.y)}`,
        },
      },
    },
  };
}

const ALONE_RADIUS = 3; // a value between two gaps has no line to either side: it is drawn as a dot

/** Whether the value at ``index`` of ``data`` ({x, y} points) stands alone: a value, with none on either side. */
export function standsAlone(data, index) {
  const valued = (i) => i >= 0 && i < data.length && data[i].y !== null && data[i].y !== undefined;
  return valued(index) && !valued(index - 1) && !valued(index + 1);
}

function line(label, color, fill) {
  return {
    label,
    data: [],
    borderColor: color,
    backgroundColor: fill ? `${color}33` : color,
    fill,
    borderWidth: 2,
    // Lines alone show the values; a bucket between gaps (a single minute with requests) would be invisible.
    pointRadius: (ctx) => (ctx.type === "data" && standsAlone(ctx.dataset.data, ctx.dataIndex) ? ALONE_RADIUS : 0),
    pointBackgroundColor: color,
    pointHoverRadius: 3,
    tension: 0.25,
  };
}

/** Copy a snapshot series into ``target`` in place, keeping at most ``MAX_POINTS``. */
export function fillPoints(target, series) {
  const points = series && Array.isArray(series.data) ? series.data : [];
  const start = Math.max(0, points.length - MAX_POINTS);
  let n = 0;
  for (let i = start; i < points.length; i += 1) {
    const x = parseTime(points[i].timestamp);
    const raw = points[i].value;
    // A bucket without requests has no latency (null): a gap in the line, never a point at 0.
    const y = raw === null || raw === undefined ? null : Number(raw);
    if (!Number.isFinite(x) || (y !== null && !Number.isFinite(y))) continue;
    if (n < target.length) {
      target[n].x = x;
      target[n].y = y;
    } else {
      target.push({ x, y });
    }
    n += 1;
  }
  target.length = n;
  target.sort((a, b) => a.x - b.x);
}

function statusColor(code, index) {
  const palette = STATUS_COLORS[Math.floor(code / 100)] || STATUS_COLORS.other;
  return palette[index % palette.length];
}

/** Top status codes by count, the rest summed as "other"; labels, counts and colours. */
export function statusSlices(statusCodes) {
  const rows = (Array.isArray(statusCodes) ? statusCodes : [])
    .filter((row) => Number.isFinite(Number(row.count)) && Number(row.count) > 0)
    .map((row) => ({ code: Number(row.code), count: Number(row.count) }))
    .sort((a, b) => b.count - a.count);
  const shown = rows.slice(0, MAX_CODES).sort((a, b) => a.code - b.code);
  const rest = rows.slice(MAX_CODES).reduce((sum, row) => sum + row.count, 0);
  const perClass = {};
  const slices = shown.map((row) => {
    const cls = Math.floor(row.code / 100);
    perClass[cls] = (perClass[cls] || 0) + 1;
    return { label: String(row.code), count: row.count, color: statusColor(row.code, perClass[cls] - 1) };
  });
  if (rest > 0) slices.push({ label: "other", count: rest, color: STATUS_COLORS.other[0] });
  return slices;
}

function replaceInPlace(target, values) {
  target.length = 0;
  for (const value of values) target.push(value);
}

/** Legend entries "200  89.2 %": the share says more than the colour alone. */
function statusLegend(chart) {
  const items = window.Chart.overrides.doughnut.plugins.legend.labels.generateLabels(chart);
  const data = chart.data.datasets[0].data;
  const total = data.reduce((a, b) => a + b, 0) || 1;
  for (const item of items) item.text = `${item.text}  ${percent((data[item.index] / total) * 100)}`;
  return items;
}

export class Charts {
  constructor(root) {
    const Chart = window.Chart;
    Chart.defaults.color = COLORS.text;
    Chart.defaults.borderColor = COLORS.grid;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    // Axis and legend text follows the page's fluid type scale, so a wall screen stays readable.
    Chart.defaults.font.size = Math.round(parseFloat(getComputedStyle(document.documentElement).fontSize) * 0.72);
    const canvas = (id) => root.querySelector(`[data-testid=${id}] canvas`);

    this.rate = new Chart(canvas("chart-request-rate"), {
      type: "line",
      data: { datasets: [line("req/s", COLORS.rate, true)] },
      options: lineOptions({ format: rate, legend: false }),
    });
    this.latency = new Chart(canvas("chart-latency"), {
      type: "line",
      data: { datasets: [line("p50", COLORS.p50, false), line("p95", COLORS.p95, false), line("p99", COLORS.p99, false)] },
      options: lineOptions({ format: millis, legend: true }),
    });
    this.errors = new Chart(canvas("chart-error-rate"), {
      type: "line",
      data: { datasets: [line("5xx %", COLORS.errors, true)] },
      options: lineOptions({ format: percent, legend: false }),
    });
    this.status = new Chart(canvas("chart-status-codes"), {
      type: "doughnut",
      data: { labels: [], datasets: [{ data: [], backgroundColor: [], borderColor: "#151b23", borderWidth: 2 }] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        cutout: "55%",
        onResize: (chart, size) => {
          chart.options.plugins.legend.position = size.width < 520 ? "bottom" : "right";
        },
        plugins: {
          legend: { position: "right", labels: { boxWidth: 12, generateLabels: statusLegend } },
          tooltip: {
            callbacks: {
              label: (item) => {
                const total = item.dataset.data.reduce((a, b) => a + b, 0) || 1;
                return `${item.label}: ${count(item.parsed)} (${percent((item.parsed / total) * 100)})`;
              },
            },
          },
        },
      },
    });
    this.lines = [this.rate, this.latency, this.errors];
  }

  /** Draw a snapshot into the existing charts. */
  update(snapshot) {
    const end = parseTime(snapshot.windowEnd) || parseTime(snapshot.timestamp) || Date.now();
    fillPoints(this.rate.data.datasets[0].data, snapshot.requestRate);
    const latency = snapshot.latency || {};
    ["p50", "p95", "p99"].forEach((key, i) => fillPoints(this.latency.data.datasets[i].data, latency[key]));
    fillPoints(this.errors.data.datasets[0].data, snapshot.errorRate);
    const [min, max] = this.span(end);
    for (const chart of this.lines) {
      chart.options.scales.x.min = min;
      chart.options.scales.x.max = max;
      chart.update("none");
    }
    const slices = statusSlices(snapshot.statusCodes);
    replaceInPlace(this.status.data.labels, slices.map((s) => s.label));
    replaceInPlace(this.status.data.datasets[0].data, slices.map((s) => s.count));
    replaceInPlace(this.status.data.datasets[0].backgroundColor, slices.map((s) => s.color));
    this.status.update("none");
  }

  /** The time axis: the points' own extent (so the newest point is the right edge), else the hour to ``end``. */
  span(end) {
    let min = Infinity;
    let max = -Infinity;
    for (const chart of this.lines) {
      for (const dataset of chart.data.datasets) {
        if (!dataset.data.length) continue;
        min = Math.min(min, dataset.data[0].x);
        max = Math.max(max, dataset.data[dataset.data.length - 1].x);
      }
    }
    return max - min >= TICK_MS ? [min, max] : [end - HOUR_MS, end];
  }

  /** Empty every chart (the page switched scope and waits for the first snapshot). */
  clear() {
    for (const chart of [...this.lines, this.status]) {
      for (const dataset of chart.data.datasets) dataset.data.length = 0;
      if (chart.data.labels) chart.data.labels.length = 0;
      chart.update("none");
    }
  }

  /** Points held across all charts (tests check it stays bounded). */
  pointCount() {
    return [...this.lines, this.status].reduce(
      (sum, chart) => sum + chart.data.datasets.reduce((n, d) => n + d.data.length, 0),
      0,
    );
  }
}
