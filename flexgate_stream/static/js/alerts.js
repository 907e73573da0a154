// The alerts feed: rule alerts (firing / resolved) and gateway events (circuit breakers,
// rate limits), newest first. Bounded: the newest MAX_ITEMS entries are kept.

import { clockSeconds, parseTime } from "./format.js";

const MAX_ITEMS = 50;
const MAX_SEEN = 1000;
const EVENT_FIELDS = ["route", "upstream", "target", "service", "name", "state", "failures", "reason", "limit"];

function key(message) {
  if (message.type === "alert") return `alert:${message.id}:${message.state}:${message.at}`;
  return `event:${message.id}:${message.timestamp}`;
}

function label(event) {
  // "circuit_breaker.opened" -> "Circuit breaker opened"
  const text = String(event || "event").replace(/[._]+/g, " ").trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function severityClass(message) {
  if (message.type === "alert") return message.state === "resolved" ? "ok" : message.severity || "warning";
  const name = String(message.event || "");
  if (name.endsWith(".opened")) return "critical";
  if (name.endsWith(".closed")) return "ok";
  return "info";
}

function eventDetail(data) {
  if (!data || typeof data !== "object") return "";
  const parts = [];
  for (const field of EVENT_FIELDS) {
    const value = data[field];
    if (value !== undefined && value !== null && typeof value !== "object") parts.push(`${field} ${value}`);
  }
  return parts.join(" · ");
}

/** A rule's value: 3,621 or 7.5 or 0.042, never 3,620.897. */
function figure(value) {
  const n = Number(value);
  const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 1 ? 2 : 3;
  return n.toLocaleString("en-US", { maximumFractionDigits: digits });
}

function alertDetail(alert) {
  const parts = [];
  if (alert.route) parts.push(`route ${alert.route}`);
  if (alert.value !== null && alert.value !== undefined) {
    const threshold = alert.threshold !== null && alert.threshold !== undefined
      ? ` (threshold ${figure(alert.threshold)})`
      : "";
    parts.push(`value ${figure(alert.value)}${threshold}`);
  }
  return parts.join(" · ");
}

export class AlertFeed {
  constructor(section) {
    this.list = section.querySelector("[data-testid=alerts-feed]");
    this.empty = section.querySelector("[data-testid=alerts-empty]");
    this.badge = section.querySelector("[data-testid=alerts-firing-count]");
    this.statusLine = section.querySelector("[data-testid=alerts-status]");
    this.items = []; // newest first
    this.seen = new Map();
    this.firing = new Map(); // rule|route -> alert
    this.route = null;
    this.renderTimer = null;
  }

  /** Take one message from the alerts stream (alert, event, or anything else to ignore). */
  add(message) {
    if (!message || (message.type !== "alert" && message.type !== "event")) return;
    const k = key(message);
    if (this.seen.has(k)) return; // replayed after a reconnect
    this.seen.set(k, true);
    if (this.seen.size > MAX_SEEN) this.seen.delete(this.seen.keys().next().value);
    if (message.type === "alert") {
      const rule = `${message.rule}|${message.route || ""}`;
      if (message.state === "firing") this.firing.set(rule, message);
      else this.firing.delete(rule);
    }
    this.items.unshift({ kind: message.type, message });
    if (this.items.length > MAX_ITEMS) this.items.length = MAX_ITEMS;
    this.scheduleRender();
  }

  /** Note that the server reset this feed (``reason`` is its sentence: fell behind, history expired). */
  noteReset(reason) {
    this.items.unshift({ kind: "reset", message: { at: new Date().toISOString(), reason: String(reason || "") } });
    if (this.items.length > MAX_ITEMS) this.items.length = MAX_ITEMS;
    this.scheduleRender();
  }

  setRoute(route) {
    this.route = route;
    this.scheduleRender();
  }

  setStatus(text) {
    if (this.statusLine.textContent !== text) this.statusLine.textContent = text;
  }

  visible(item) {
    if (this.route === null || item.kind !== "alert") return true;
    return !item.message.route || item.message.route === this.route;
  }

  scheduleRender() {
    // Replays arrive as bursts of messages: draw once per burst.
    if (this.renderTimer === null) this.renderTimer = setTimeout(() => this.render(), 30);
  }

  render() {
    this.renderTimer = null;
    const shown = this.items.filter((item) => this.visible(item));
    this.list.replaceChildren(...shown.map((item) => this.entry(item)));
    this.empty.hidden = shown.length > 0;
    const firing = [...this.firing.values()].filter((a) => this.route === null || !a.route || a.route === this.route);
    this.badge.textContent = `${firing.length} firing`;
    this.badge.dataset.count = String(firing.length);
    this.badge.title = firing.map((a) => a.rule).join(", ");
  }

  entry({ kind, message }) {
    const li = document.createElement("li");
    li.className = "feed__item";
    li.dataset.testid = kind === "alert" ? "alert-item" : kind === "event" ? "event-item" : "reset-item";
    const tag = document.createElement("span");
    tag.className = "tag";
    const title = document.createElement("span");
    title.className = "feed__title";
    const detail = document.createElement("span");
    detail.className = "feed__detail";
    const time = document.createElement("time");
    time.className = "feed__time";
    const at = kind === "event" ? message.timestamp : message.at;
    const ms = parseTime(at);
    if (Number.isFinite(ms)) {
      time.dateTime = new Date(ms).toISOString();
      time.textContent = clockSeconds(ms);
    }
    if (kind === "alert") {
      li.dataset.state = message.state;
      li.dataset.rule = message.rule;
      li.dataset.severity = message.severity;
      tag.textContent = message.state === "resolved" ? "Resolved" : "Firing";
      tag.dataset.tone = severityClass(message);
      title.textContent = message.rule;
      detail.textContent = [message.severity, alertDetail(message)].filter(Boolean).join(" · ");
    } else if (kind === "event") {
      li.dataset.event = message.event;
      tag.textContent = "Gateway";
      tag.dataset.tone = severityClass(message);
      title.textContent = label(message.event);
      detail.textContent = eventDetail(message.data);
    } else {
      tag.textContent = "Reset";
      tag.dataset.tone = "info";
      title.textContent = "The server reset this feed";
      detail.textContent = message.reason;
    }
    li.append(tag, title, time, detail);
    return li;
  }
}
