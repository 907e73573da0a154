// The key-figure cards, filled from one snapshot's summary.

import { compact, count, millis, percent, rate } from "./format.js";

function lastValue(series) {
  const data = series && Array.isArray(series.data) ? series.data : [];
  return data.length ? Number(data[data.length - 1].value) : NaN;
}

function meanValue(series) {
  const data = series && Array.isArray(series.data) ? series.data : [];
  if (!data.length) return NaN;
  return data.reduce((sum, point) => sum + Number(point.value), 0) / data.length;
}

export class Cards {
  constructor(root) {
    this.root = root;
    this.fields = {};
    const named = "[data-testid^=value-], [data-testid^=sub-], [data-testid=window-name], [data-testid=status-window]";
    for (const el of root.querySelectorAll(named)) {
      this.fields[el.dataset.testid] = el;
    }
  }

  set(name, text, title = "") {
    const el = this.fields[name];
    if (!el) return;
    if (el.textContent !== text) {
      // "50.2 ms": the number large, the unit small beside it.
      const split = name.startsWith("value-") ? /^(.*?)( (?:ms|s|%))$/.exec(text) : null;
      if (split) {
        const unit = document.createElement("span");
        unit.className = "card__unit";
        unit.textContent = split[2];
        el.replaceChildren(split[1], unit);
      } else {
        el.textContent = text;
      }
    }
    if (title) el.title = title;
    else el.removeAttribute("title");
  }

  /** Show the figures of ``snapshot``. */
  update(snapshot) {
    const s = snapshot.summary || {};
    const windowName = (snapshot.window && snapshot.window.name) || "";
    this.set("window-name", windowName ? `(${windowName})` : "");
    this.set("status-window", windowName);
    this.set("value-requests", compact(s.totalRequests), `${count(s.totalRequests)} requests`);
    this.set("sub-requests", Number.isFinite(s.totalRequestsAllTime) ? `${compact(s.totalRequestsAllTime)} all time` : "");
    this.set("value-rps", rate(lastValue(snapshot.requestRate)));
    const mean = meanValue(snapshot.requestRate);
    this.set("sub-rps", Number.isFinite(mean) ? `${rate(mean)} average, last hour` : "");
    this.set("value-avg-latency", millis(s.avgLatency));
    this.set("sub-avg-latency", `p50 ${millis(s.p50Latency)}`);
    this.set("value-p95-latency", millis(s.p95Latency));
    this.set("value-p99-latency", millis(s.p99Latency));
    this.set("value-success-rate", percent(s.availability));
    this.set("sub-success-rate", `${count(s.successfulRequests)} 2xx`);
    this.set("value-error-rate", percent(s.errorRate));
    this.set("sub-error-rate", `${count(s.serverErrors)} 5xx · ${count(s.clientErrors)} 4xx`);
  }

  /** Blank every figure (the skeleton shows until the next snapshot). */
  clear() {
    for (const name of Object.keys(this.fields)) {
      if (name !== "window-name" && name !== "status-window") this.set(name, "\u00a0");
    }
  }
}
