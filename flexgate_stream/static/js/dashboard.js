// The dashboard page: wires the two streams to the views and keeps the route scope in the URL.

import { AlertFeed } from "./alerts.js";
import { askForToken, currentToken } from "./auth.js";
import { BreakdownTable } from "./breakdown.js";
import { Cards } from "./cards.js";
import { Charts } from "./charts.js";
import { EntryView } from "./entry.js";
import { parseTime } from "./format.js";
import { GroupList } from "./group_list.js";
import { ConnectionView } from "./status.js";
import { Phase, StreamConnection } from "./stream.js";

const ALERT_HISTORY = "24h"; // replayed on first connect, so rules firing for hours still show

const $ = (id) => document.querySelector(`[data-testid=${id}]`);

function routeFromUrl() {
  return new URL(window.location.href).searchParams.get("route") || null;
}

function main() {
  const page = $("dashboard");
  const view = new ConnectionView(document.body);
  const cards = new Cards(page);
  const charts = new Charts(page);
  const feed = new AlertFeed(page.querySelector(".alerts"));
  const routesPanel = page.querySelector(".routes");
  const upstreamsPanel = page.querySelector(".upstreams");
  const table = new GroupList(routesPanel, new BreakdownTable(routesPanel, {
    name: "routes",
    onSelect: (name) => selectRoute(name),
  }), { kind: "routes", singular: "route" });
  const upstreams = new GroupList(upstreamsPanel, new BreakdownTable(upstreamsPanel, { name: "upstreams" }),
    { kind: "upstreams", singular: "upstream" });
  const entry = new EntryView($("route-entry"));
  let route = routeFromUrl();
  let snapshots = 0;
  let shownEnd = ""; // windowEnd of the snapshot on screen: an older one (a catch-up replay) never replaces it

  const onUnauthorized = (refused) => {
    askForToken(refused).then(() => {
      metrics.retryNow();
      alerts.retryNow();
    });
  };

  const metrics = new StreamConnection({
    path: "/api/stream/metrics",
    params: () => ({ route }),
    token: currentToken,
    onMessage: (data, id) => {
      if (data.type !== "metrics") return;
      if ((data.route || null) !== route) return; // a late frame from the previous scope
      if (data.windowEnd && data.windowEnd < shownEnd) return; // ISO UTC strings order as times
      shownEnd = data.windowEnd || shownEnd;
      snapshots += 1;
      page.dataset.snapshots = String(snapshots);
      page.dataset.lastEventId = id || "";
      entry.hide();
      cards.update(data);
      charts.update(data);
      table.update(data.routes, route, data.routeCount);
      upstreams.update(data.upstreams, null, data.upstreamCount);
      page.dataset.points = String(charts.pointCount());
      view.setSnapshotTime(parseTime(data.timestamp));
      page.setAttribute("aria-busy", "false");
    },
    onPhase: (phase, detail) => {
      view.setPhase(phase, detail);
      if (phase === Phase.LIVE) alerts.retryNow(); // the server is back: no need to wait out a backoff
    },
    onUnauthorized,
    onRejected: () => {
      // The server refused the route (malformed): fall back to every route.
      if (route !== null) selectRoute(null);
    },
  });

  const alerts = new StreamConnection({
    path: "/api/stream/alerts",
    resumeAfterReset: true,
    params: (lastId) => (lastId ? {} : { since: ALERT_HISTORY }),
    token: currentToken,
    onMessage: (data) => feed.add(data),
    onEvent: (name, data) => {
      if (name === "reset") feed.noteReset(data.reason);
    },
    onPhase: (phase) => {
      feed.setStatus(alertStatus(phase));
      if (phase === Phase.LIVE) metrics.retryNow();
    },
    onUnauthorized,
  });

  function showScope() {
    const scope = $("scope");
    const clear = $("route-filter-clear");
    if (route === null) {
      scope.textContent = "All routes";
      clear.hidden = true;
      document.title = "FlexGate · live metrics";
    } else {
      scope.textContent = "";
      const code = document.createElement("code");
      code.dataset.testid = "route-filter-name";
      code.textContent = route;
      scope.append("Route ", code);
      clear.hidden = false;
      document.title = `${route} · FlexGate live metrics`;
    }
    feed.setRoute(route);
  }

  function applyScope() {
    showScope();
    page.setAttribute("aria-busy", "true");
    cards.clear();
    charts.clear();
    table.clear(route);
    upstreams.clear();
    view.resetSnapshot();
    entry.hide();
    metrics.restart();
    lookUpEntry();
  }

  // A route outside the busiest has no stream of its own: show what the index knows of it meanwhile.
  function lookUpEntry() {
    if (route === null) return;
    const asked = route;
    entry.lookUp(asked, () => route === asked && shownEnd === "");
  }

  function selectRoute(name) {
    if (name === route) return;
    route = name;
    shownEnd = "";
    const url = new URL(window.location.href);
    if (route === null) url.searchParams.delete("route");
    else url.searchParams.set("route", route);
    window.history.pushState({ route }, "", url);
    applyScope();
    // Keep keyboard focus somewhere useful: the row (or the button) that had it is gone or hidden.
    if (route === null) $("scope").focus();
    else $("route-filter-clear").focus();
  }

  $("route-filter-clear").addEventListener("click", () => selectRoute(null));
  window.addEventListener("popstate", () => {
    const next = routeFromUrl();
    if (next !== route) {
      route = next;
      shownEnd = "";
      applyScope();
    }
  });
  window.addEventListener("online", () => {
    metrics.retryNow();
    alerts.retryNow();
  });

  showScope();
  metrics.start();
  lookUpEntry();
  alerts.start();
}

function alertStatus(phase) {
  switch (phase) {
    case Phase.LIVE:
      return "Live";
    case Phase.RECONNECTING:
      return "Reconnecting…";
    case Phase.UPSTREAM_DOWN:
      return "Message bus unreachable";
    case Phase.UNAUTHORIZED:
      return "API token needed";
    default:
      return "Connecting";
  }
}

if (window.Chart) {
  main();
} else {
  const banner = $("connection-banner");
  banner.textContent = "The charting library did not load; reload the page.";
  banner.hidden = false;
}
