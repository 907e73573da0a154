// Number, duration and time formatting for the dashboard. Pure functions, no DOM.

const DASH = "—";

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

const UNITS = [[1e3, "K"], [1e6, "M"], [1e9, "B"]];

function scaled(value) {
  const abs = Math.abs(value);
  return trimZeros(value.toFixed(abs >= 100 ? 0 : abs >= 10 ? 1 : 2));
}

/** A count as 950, 12.3K, 4.56M, 1.2B. */
export function compact(value) {
  if (!isNumber(value)) return DASH;
  const abs = Math.abs(value);
  if (abs < 999.5) return String(Math.round(value));
  let unit = abs >= 1e9 ? 2 : abs >= 1e6 ? 1 : 0;
  let text = scaled(value / UNITS[unit][0]);
  if (Math.abs(Number(text)) >= 1000 && unit < UNITS.length - 1) {
    unit += 1; // 999,999 reads 1M, not 1000K
    text = scaled(value / UNITS[unit][0]);
  }
  return `${text}${UNITS[unit][1]}`;
}

/** A whole count with thousands separators, for tooltips and sub-lines. */
export function count(value) {
  return isNumber(value) ? Math.round(value).toLocaleString("en-US") : DASH;
}

/** Requests per second: 0.42, 12.3, 1,234. */
export function rate(value) {
  if (!isNumber(value)) return DASH;
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString("en-US");
  if (abs >= 10) return value.toFixed(1);
  if (value === 0) return "0";
  return value.toFixed(2);
}

/** A latency in milliseconds: 0.8 ms, 123 ms, 1.23 s. */
export function millis(value) {
  if (!isNumber(value)) return DASH;
  if (value >= 1000) return `${trimZeros((value / 1000).toFixed(2))} s`;
  if (value >= 100) return `${Math.round(value)} ms`;
  if (value >= 10) return `${value.toFixed(1)} ms`;
  if (value === 0) return "0 ms";
  return `${value.toFixed(2)} ms`;
}

/** A bare number for a table column whose unit is in the header: 0.42, 21.4, 388, 2,380. */
export function plain(value) {
  if (!isNumber(value)) return DASH;
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString("en-US");
  if (abs >= 10) return value.toFixed(1);
  return trimZeros(value.toFixed(2));
}

/** A percentage (already 0–100): 99.95 %, 0.12 %, 100 %. */
export function percent(value) {
  if (!isNumber(value)) return DASH;
  if (value === 0 || value === 100) return `${value} %`;
  const digits = Math.abs(value) >= 1 ? 2 : 3;
  return `${trimZeros(value.toFixed(digits))} %`;
}

/** An age in seconds as "just now", "12 s ago", "3 min ago", "2 h ago". */
export function age(seconds) {
  if (!isNumber(seconds) || seconds < 1) return "just now";
  if (seconds < 90) return `${Math.floor(seconds)} s ago`;
  if (seconds < 90 * 60) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

/** A wall-clock time HH:MM (local), for chart axes. */
export function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A wall-clock time HH:MM:SS (local), for the feed. */
export function clockSeconds(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Milliseconds since the epoch from an ISO 8601 string, or NaN. */
export function parseTime(iso) {
  return typeof iso === "string" ? Date.parse(iso) : NaN;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function trimZeros(text) {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}
