// What a breakdown table lists: the busiest routes (or upstreams) of the live snapshot with their
// count in all, or, on request, every one of them a page at a time from /api/metrics/<kind>
// (the publisher's index, busiest first). A page is a still picture: live snapshots go on
// arriving and show again on "Back to the busiest".

import { fetchJson } from "./auth.js";
import { OTHER } from "./breakdown.js";
import { clockSeconds, count, parseTime } from "./format.js";

export class GroupList {
  /**
   * @param {Element} section          the panel holding the table and its controls
   * @param {import("./breakdown.js").BreakdownTable} table
   * @param {object} options
   * @param {string} options.kind      "routes" or "upstreams": the API path and data-testid prefix
   * @param {string} options.singular  "route" or "upstream", for the text
   */
  constructor(section, table, { kind, singular }) {
    this.kind = kind;
    this.singular = singular;
    this.table = table;
    const $ = (id) => section.querySelector(`[data-testid=${kind}-${id}]`);
    this.countLine = $("count");
    this.browse = $("browse");
    this.pager = $("pager");
    this.status = $("page-status");
    this.previous = $("page-prev");
    this.next = $("page-next");
    this.mode = "busiest";
    this.live = { rows: [], selected: null, total: null };
    this.page = null; // the GroupIndex page on screen in "all" mode
    this.request = 0; // the newest page request: an older answer arriving late is dropped
    this.browse.addEventListener("click", () => (this.mode === "all" ? this.showBusiest() : this.load(0)));
    this.previous.addEventListener("click", () => this.page && this.load(this.page.page - 1));
    this.next.addEventListener("click", () => this.page && this.load(this.page.page + 1));
  }

  /** A live snapshot's list (busiest entries, then "(other)"), the selected name and the count in all. */
  update(rows, selected, total) {
    this.live = { rows: Array.isArray(rows) ? rows : [], selected, total: Number.isFinite(total) ? total : null };
    if (this.mode === "busiest") this.showLive();
  }

  /** Nothing to list until the next snapshot (the page switched scope to ``selected``). */
  clear(selected = null) {
    this.update([], selected, null);
    if (this.page) this.table.update(this.pageRows(this.page), selected);
  }

  showBusiest() {
    this.mode = "busiest";
    this.request += 1;
    this.page = null;
    this.pager.hidden = true;
    this.showLive();
  }

  showLive() {
    const { rows, selected } = this.live;
    const listed = rows.filter((r) => r && r.name !== OTHER).length;
    const total = this.live.total ?? listed;
    const others = Math.max(0, total - listed);
    this.table.update(rows, selected, others ? `${count(others)} other ${this.plural(others)}` : "All others");
    this.countLine.dataset.count = String(total);
    let text = `${count(total)} ${this.plural(total)} in all`;
    if (total > listed) text += ` · the ${count(listed)} busiest shown`;
    if (this.live.total === null && !rows.length) text = ""; // waiting for the first snapshot of this scope
    this.countLine.textContent = text;
    this.browse.textContent = `Browse all ${this.kind}`;
    this.browse.hidden = total <= listed; // every one is on screen already
  }

  /** Show page ``number`` of every route (or upstream), as the server's index has it now. */
  async load(number) {
    const request = ++this.request;
    this.browse.disabled = true;
    let answer;
    try {
      answer = await fetchJson(`/api/metrics/${this.kind}?page=${encodeURIComponent(number)}`);
    } catch {
      answer = { status: 0, body: null };
    } finally {
      this.browse.disabled = false;
    }
    if (request !== this.request) return; // another page was asked for meanwhile
    const page = answer.body && answer.body.success ? answer.body.data : null;
    if (answer.status === 200 && page && Array.isArray(page.entries)) {
      this.showPage(page);
    } else if (answer.status === 404 && number > 0) {
      this.load(0); // the list changed under us (fewer pages now): start again from the busiest
    } else {
      this.mode = "all";
      this.pager.hidden = false;
      this.previous.disabled = this.next.disabled = true;
      this.browse.textContent = "Back to the busiest";
      this.status.textContent = answer.status === 404
        ? `No list of every ${this.singular} has been published yet.`
        : `The list of every ${this.singular} could not be loaded${answer.status ? ` (HTTP ${answer.status})` : ""}.`;
    }
  }

  showPage(page) {
    this.mode = "all";
    this.page = page;
    this.table.update(this.pageRows(page), this.live.selected);
    const first = page.page * (page.entries.length ? this.perPage(page) : 0);
    const at = parseTime(page.windowEnd);
    this.pager.hidden = false;
    this.previous.disabled = page.page <= 0;
    this.next.disabled = page.page >= page.pages - 1;
    this.status.textContent = `Page ${page.page + 1} of ${page.pages}`;
    this.status.dataset.page = String(page.page);
    this.countLine.dataset.count = String(page.total);
    this.countLine.textContent = `${count(page.total)} ${this.plural(page.total)} in all · `
      + `${count(first + 1)}–${count(first + page.entries.length)}, busiest first, `
      + `last 24 h as of ${Number.isFinite(at) ? clockSeconds(at) : "now"}`;
    this.browse.textContent = "Back to the busiest";
  }

  /** A page's entries as table rows: their figures over 24 h, the window of the snapshot's own list. */
  pageRows(page) {
    return page.entries.map((entry) => ({ ...entry.last24Hours, name: entry.name }));
  }

  /** Entries per page: every page but the last is full, so a full page tells; the last one cannot. */
  perPage(page) {
    if (page.page < page.pages - 1) return page.entries.length;
    return page.pages > 1 ? Math.ceil((page.total - page.entries.length) / (page.pages - 1)) : 0;
  }

  plural(n) {
    return n === 1 ? this.singular : this.kind;
  }
}
