// The breakdown tables (routes, upstreams): sortable by any column. In the routes table a row
// selects that route for the whole page. The publisher lists the busiest entries and sums the rest
// into one entry named "(other)": that row is not a route, so it is drawn apart, always last.

import { compact, count, millis, percent, plain, rate } from "./format.js";

// Units live in the column headers (req/s, %, ms), so the cells stay narrow; titles give the full figure.
const COLUMNS = [
  { key: "name", text: (r) => r.name },
  { key: "requests", text: (r) => compact(r.requests), title: (r) => count(r.requests) },
  { key: "requestsPerSecond", text: (r) => rate(r.requestsPerSecond) },
  { key: "errorRate", text: (r) => plain(r.errorRate), title: (r) => percent(r.errorRate) },
  { key: "p50Latency", text: (r) => plain(r.p50Latency), title: (r) => millis(r.p50Latency) },
  { key: "p95Latency", text: (r) => plain(r.p95Latency), title: (r) => millis(r.p95Latency) },
  { key: "p99Latency", text: (r) => plain(r.p99Latency), title: (r) => millis(r.p99Latency) },
];

export const OTHER = "(other)"; // messages.OTHER

/** Sort rows by ``key``; numbers descending by default, names ascending. */
export function sortRows(rows, key, direction) {
  const sign = direction === "ascending" ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = a[key];
    const y = b[key];
    const order = typeof x === "string" || typeof y === "string"
      ? String(x ?? "").localeCompare(String(y ?? ""))
      : (Number(x) || 0) - (Number(y) || 0);
    return order * sign || String(a.name).localeCompare(String(b.name));
  });
}

export class BreakdownTable {
  /**
   * @param {Element} section   the panel holding the table
   * @param {object} options
   * @param {string} options.name                  "routes" or "upstreams": the data-testid prefix
   * @param {(name: string) => void} [options.onSelect]   makes rows selectable
   */
  constructor(section, { name, onSelect = null }) {
    this.name = name;
    this.rowTestId = `${name.replace(/s$/, "")}-row`;
    this.table = section.querySelector(`[data-testid=${name}-table]`);
    this.body = section.querySelector(`[data-testid=${name}-body]`);
    this.empty = section.querySelector(`[data-testid=${name}-empty]`);
    this.onSelect = onSelect;
    this.rows = new Map(); // row name -> <tr>, reused across snapshots
    this.data = [];
    this.rest = null; // the "(other)" entry, or null
    this.restLabel = "";
    this.restRow = null;
    this.selected = null;
    this.sortKey = "requests";
    this.sortDirection = "descending";
    this.table.querySelector("thead").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-sort]");
      if (button) this.sortBy(button.dataset.sort);
    });
    if (onSelect) {
      this.body.addEventListener("click", (event) => {
        const row = event.target.closest("tr[data-name]");
        if (row) this.onSelect(row.dataset.name);
      });
    }
  }

  sortBy(key) {
    if (key === this.sortKey) {
      this.sortDirection = this.sortDirection === "ascending" ? "descending" : "ascending";
    } else {
      this.sortKey = key;
      this.sortDirection = key === "name" ? "ascending" : "descending";
    }
    for (const th of this.table.querySelectorAll("thead th")) {
      const button = th.querySelector("button[data-sort]");
      th.setAttribute("aria-sort", button.dataset.sort === this.sortKey ? this.sortDirection : "none");
    }
    this.render();
  }

  /**
   * Show ``rows`` (Breakdown objects) with ``selected`` marked; an "(other)" entry among them becomes the
   * last row, labelled ``restLabel``.
   */
  update(rows, selected, restLabel = "All others") {
    const valid = Array.isArray(rows) ? rows.filter((r) => r && typeof r.name === "string") : [];
    this.data = valid.filter((r) => r.name !== OTHER);
    this.rest = valid.find((r) => r.name === OTHER) || null;
    this.restLabel = restLabel;
    this.selected = selected;
    this.render();
  }

  clear() {
    this.update([], this.selected);
  }

  render() {
    const sorted = sortRows(this.data, this.sortKey, this.sortDirection);
    const keep = new Set(sorted.map((r) => r.name));
    for (const [name, tr] of this.rows) {
      if (!keep.has(name)) {
        tr.remove();
        this.rows.delete(name);
      }
    }
    let previous = null;
    for (const item of sorted) {
      const tr = this.rows.get(item.name) || this.createRow(item.name);
      this.fillRow(tr, item);
      const expected = previous ? previous.nextSibling : this.body.firstChild;
      if (tr !== expected) this.body.insertBefore(tr, expected);
      previous = tr;
    }
    this.renderRest();
    this.empty.hidden = sorted.length > 0 || this.rest !== null;
  }

  renderRest() {
    if (this.rest === null) {
      if (this.restRow) this.restRow.remove();
      return;
    }
    if (!this.restRow) this.restRow = this.createRestRow();
    this.fillRow(this.restRow, { ...this.rest, name: this.restLabel });
    if (this.body.lastChild !== this.restRow) this.body.append(this.restRow);
  }

  /** The row of everything the list leaves out: no name to select, only a sum. */
  createRestRow() {
    const tr = document.createElement("tr");
    tr.className = "is-rest";
    tr.dataset.testid = `${this.name}-other-row`;
    for (const column of COLUMNS) {
      const td = document.createElement(column.key === "name" ? "th" : "td");
      if (column.key === "name") {
        td.scope = "row";
        td.append(document.createElement("span"));
      } else {
        td.className = "num";
      }
      td.dataset.col = column.key;
      tr.append(td);
    }
    return tr;
  }

  createRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.name = name;
    tr.dataset.testid = this.rowTestId;
    if (this.onSelect) tr.classList.add("is-selectable");
    for (const column of COLUMNS) {
      const td = document.createElement(column.key === "name" ? "th" : "td");
      if (column.key === "name") {
        td.scope = "row";
        const label = document.createElement(this.onSelect ? "button" : "span");
        if (this.onSelect) {
          label.type = "button";
          label.className = "row-link";
          label.dataset.testid = "route-link";
          label.setAttribute("aria-label", `Show only route ${name}`);
        }
        td.append(label);
      } else {
        td.className = "num";
      }
      td.dataset.col = column.key;
      tr.append(td);
    }
    this.rows.set(name, tr);
    return tr;
  }

  fillRow(tr, item) {
    tr.classList.toggle("is-selected", item.name === this.selected);
    if (item.name === this.selected) tr.setAttribute("aria-current", "true");
    else tr.removeAttribute("aria-current");
    COLUMNS.forEach((column, i) => {
      const cell = tr.children[i];
      const target = column.key === "name" ? cell.firstChild : cell;
      const text = column.text(item);
      if (target.textContent !== text) target.textContent = text;
      if (column.title) cell.title = column.title(item);
    });
  }
}
