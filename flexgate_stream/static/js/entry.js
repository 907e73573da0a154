// A selected route without a live stream of its own (not among the busiest the publisher streams):
// its figures over 24 h, the last hour and the last 5 minutes, from /api/metrics/live?route=,
// which answers them from the publisher's index of every route.

import { fetchJson } from "./auth.js";
import { clockSeconds, count, parseTime, plain, rate } from "./format.js";

const WINDOWS = [["last24Hours", "Last 24 h"], ["lastHour", "Last hour"], ["last5Minutes", "Last 5 min"]];
const COLUMNS = [
  ["Requests", (b) => count(b.requests)],
  ["Req/s", (b) => rate(b.requestsPerSecond)],
  ["Errors %", (b) => plain(b.errorRate)],
  ["p50 ms", (b) => plain(b.p50Latency)],
  ["p95 ms", (b) => plain(b.p95Latency)],
  ["p99 ms", (b) => plain(b.p99Latency)],
];

export class EntryView {
  constructor(section) {
    this.section = section;
    this.asked = 0;
  }

  hide() {
    this.asked += 1;
    this.section.hidden = true;
    this.section.replaceChildren();
  }

  /** Ask for ``route``; ``stillWanted()`` says, when the answer comes, whether it is still worth showing. */
  async lookUp(route, stillWanted) {
    const asked = ++this.asked;
    let answer;
    try {
      answer = await fetchJson(`/api/metrics/live?route=${encodeURIComponent(route)}`);
    } catch {
      return; // unreachable: the stream's own status says so
    }
    if (asked !== this.asked || !stillWanted()) return;
    const data = answer.body && answer.body.success ? answer.body.data : null;
    if (answer.status === 200 && data && data.type === "entry") this.show(route, data);
    else if (answer.status === 404) this.say(`${route} has no requests in the last 24 hours, or its requests count under "(overflow)".`);
  }

  show(route, found) {
    const at = parseTime(found.windowEnd);
    this.say(`${route} is not among the busiest routes, so it has no live stream. Its figures from the list of `
      + `every route, as of ${Number.isFinite(at) ? clockSeconds(at) : "now"}:`);
    const table = document.createElement("table");
    table.className = "table";
    table.dataset.testid = "route-entry-table";
    const head = table.createTHead().insertRow();
    for (const label of ["", ...COLUMNS.map(([name]) => name)]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = label;
      if (label) th.className = "num";
      head.append(th);
    }
    const body = table.createTBody();
    for (const [key, label] of WINDOWS) {
      const figures = found.entry && found.entry[key];
      if (!figures) continue;
      const tr = body.insertRow();
      tr.dataset.window = key;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      tr.append(th);
      for (const [, text] of COLUMNS) {
        const td = tr.insertCell();
        td.className = "num";
        td.textContent = text(figures);
      }
    }
    const scroll = document.createElement("div");
    scroll.className = "table-scroll";
    scroll.append(table);
    this.section.append(scroll);
  }

  say(text) {
    const p = document.createElement("p");
    p.className = "entry__text";
    p.dataset.testid = "route-entry-text";
    p.textContent = text;
    this.section.replaceChildren(p);
    this.section.hidden = false;
  }
}
