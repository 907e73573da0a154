// The connection chip, the reconnect countdown, the age of the last update and the banner
// shown while the page is not live. Redrawn every second from the stream's phase.

import { age, clockSeconds } from "./format.js";
import { Phase } from "./stream.js";

// A short blip reads "Reconnecting"; an outage longer than this reads "Disconnected".
const DISCONNECTED_AFTER_MS = 10000;
const STALE_AFTER_S = 60;

export class ConnectionView {
  constructor(root) {
    this.chip = root.querySelector("[data-testid=connection-chip]");
    this.countdown = root.querySelector("[data-testid=reconnect-countdown]");
    this.lastUpdate = root.querySelector("[data-testid=last-update]");
    this.banner = root.querySelector("[data-testid=connection-banner]");
    this.phase = Phase.CONNECTING;
    this.detail = {};
    this.snapshotAt = null; // ms, the newest snapshot's own timestamp
    setInterval(() => this.render(), 1000);
  }

  setPhase(phase, detail) {
    this.phase = phase;
    this.detail = detail || {};
    this.render();
  }

  setSnapshotTime(ms) {
    this.snapshotAt = Number.isFinite(ms) ? ms : Date.now();
    this.render();
  }

  /** Forget the last update (the page switched scope). */
  resetSnapshot() {
    this.snapshotAt = null;
    this.render();
  }

  render() {
    const now = Date.now();
    const { state, label, detail, banner } = this.describe(now);
    if (this.chip.dataset.state !== state) this.chip.dataset.state = state;
    setText(this.chip, label);
    setText(this.countdown, detail);
    if (banner) {
      setText(this.banner, banner);
      this.banner.hidden = false;
    } else {
      this.banner.hidden = true;
    }
    this.renderAge(now);
  }

  describe(now) {
    const since = this.snapshotAt !== null ? ` Figures are from ${clockSeconds(this.snapshotAt)}.` : "";
    switch (this.phase) {
      case Phase.LIVE:
        return { state: "live", label: "Live", detail: "", banner: "" };
      case Phase.UPSTREAM_DOWN:
        return {
          state: "disconnected",
          label: "Disconnected",
          detail: "message bus unreachable",
          banner: `The server has lost its connection to the message bus (NATS) and is reconnecting.${since} ` +
            "This page resumes by itself.",
        };
      case Phase.UNAUTHORIZED:
        return {
          state: "disconnected",
          label: "Disconnected",
          detail: "API token needed",
          banner: "The stream needs an API token.",
        };
      case Phase.RECONNECTING: {
        const outage = this.detail.lostAt ? now - this.detail.lostAt : 0;
        const long = outage >= DISCONNECTED_AFTER_MS;
        const wait = this.detail.nextAttemptAt ? Math.ceil((this.detail.nextAttemptAt - now) / 1000) : 0;
        const next = wait > 0 ? `next attempt in ${wait} s` : "connecting…";
        return {
          state: long ? "disconnected" : "reconnecting",
          label: long ? "Disconnected" : "Reconnecting",
          detail: next,
          banner: `Connection to the metrics stream lost ${age(outage / 1000)}; ${next}.${since}`,
        };
      }
      default:
        return { state: "connecting", label: "Connecting", detail: "", banner: "" };
    }
  }

  renderAge(now) {
    if (this.snapshotAt === null) {
      setText(this.lastUpdate, "Waiting for the first snapshot");
      this.lastUpdate.removeAttribute("data-age");
      this.lastUpdate.classList.remove("is-stale");
      return;
    }
    const seconds = Math.max(0, (now - this.snapshotAt) / 1000);
    setText(this.lastUpdate, `Updated ${age(seconds)}`);
    this.lastUpdate.dataset.age = String(Math.floor(seconds));
    this.lastUpdate.title = `Newest snapshot: ${new Date(this.snapshotAt).toISOString()}`;
    this.lastUpdate.classList.toggle("is-stale", seconds > STALE_AFTER_S);
  }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
