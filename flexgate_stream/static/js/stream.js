// One server-sent event stream, managed by hand: the page closes the EventSource on error and
// reopens it after an exponential backoff with jitter, passing the last id it saw as
// ?lastEventId= so the server replays what was missed. The browser's own reconnect would keep
// the first URL, so it could not switch routes or carry a new token.

export const Phase = Object.freeze({
  CONNECTING: "connecting", // first attempt, nothing received yet
  LIVE: "live", // stream open and the server reaches the message bus
  UPSTREAM_DOWN: "upstream-down", // stream open, the server has lost the message bus
  RECONNECTING: "reconnecting", // stream lost; waiting for (or making) the next attempt
  UNAUTHORIZED: "unauthorized", // the API wants a token we do not have
});

/** Exponential backoff with "equal jitter": half the ceiling fixed, half random. */
export class Backoff {
  constructor({ baseMs = 1000, maxMs = 30000, random = Math.random } = {}) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.random = random;
    this.attempts = 0;
  }

  next() {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** this.attempts);
    this.attempts += 1;
    return Math.round(ceiling / 2 + this.random() * (ceiling / 2));
  }

  reset() {
    this.attempts = 0;
  }
}

const PROBE_TIMEOUT_MS = 5000;
const SHUTDOWN_SPREAD_MS = [1000, 3000]; // after event: shutdown, the first retry waits 1 to 4 s
const MAX_RETRY_AFTER_MS = 60000; // a 503's Retry-After is honoured up to a minute

export class StreamConnection {
  /**
   * @param {object} options
   * @param {string} options.path                 the SSE endpoint, e.g. /api/stream/metrics
   * @param {() => object} options.params         query parameters for the next attempt
   * @param {() => string|null} options.token     the API token, if any
   * @param {(data: object, id: string) => void} options.onMessage
   * @param {(phase: string, detail: object) => void} options.onPhase
   * @param {(name: string, data: object) => void} [options.onEvent]   named events (reset)
   * @param {(refused: boolean) => void} [options.onUnauthorized]
   * @param {(message: string) => void} [options.onRejected]          400 from the server
   * @param {boolean} [options.resumeAfterReset]  a reset while the bus is down is undone once it is back
   *                                              (for feeds where every message counts: alerts)
   */
  constructor(options) {
    this.options = options;
    this.backoff = new Backoff(options.backoff);
    this.source = null;
    this.lastId = null;
    this.resumeFrom = null; // a last id to resume from once the server reaches the bus again
    this.timer = null;
    this.phase = Phase.CONNECTING;
    this.lostAt = null;
    this.nextAttemptAt = null;
    this.generation = 0;
    this.minDelayMs = 0; // the least wait before the next attempt (a shutdown notice, Retry-After)
  }

  /** Open the stream now. */
  start() {
    this.connect();
  }

  /** Start over on new parameters (another route): forget the last id and connect at once. */
  restart() {
    this.lastId = null;
    this.resumeFrom = null;
    this.backoff.reset();
    this.lostAt = null;
    this.setPhase(Phase.CONNECTING);
    this.connect();
  }

  /** Connect at once if we are waiting for a retry (the network came back, a token arrived). */
  retryNow() {
    if (this.source === null) this.connect();
  }

  connect() {
    this.closeSource();
    clearTimeout(this.timer);
    this.timer = null;
    this.nextAttemptAt = null;
    const generation = ++this.generation;
    const source = new EventSource(this.url());
    this.source = source;
    let opened = false;
    let received = false;
    const current = () => generation === this.generation;
    source.onopen = () => {
      if (current()) opened = true;
    };
    source.onmessage = (event) => {
      if (!current()) return;
      if (!received) {
        received = true;
        this.backoff.reset();
        this.lostAt = null;
        this.setPhase(Phase.LIVE); // the server follows its hello with a status event when the bus is down
      }
      this.remember(event);
      const data = parse(event.data);
      if (data !== null) this.options.onMessage(data, event.lastEventId);
    };
    source.addEventListener("status", (event) => {
      if (!current()) return;
      this.remember(event);
      const data = parse(event.data) || {};
      if (data.connected !== false && this.resumeFrom !== null) {
        // History could not be read while the bus was down: now it can, so resume from there.
        this.lastId = this.resumeFrom.id;
        this.resumeFrom = null;
        this.connect();
        return;
      }
      this.setPhase(data.connected === false ? Phase.UPSTREAM_DOWN : Phase.LIVE, data);
    });
    source.addEventListener("reset", (event) => {
      if (!current()) return;
      if (this.options.resumeAfterReset && this.phase === Phase.UPSTREAM_DOWN) {
        if (this.resumeFrom === null) this.resumeFrom = { id: this.lastId };
        return; // undone when the bus is back: nothing to report
      }
      this.remember(event);
      if (this.options.onEvent) this.options.onEvent("reset", parse(event.data) || {});
    });
    source.addEventListener("shutdown", () => {
      // The server is restarting: come back spread out, not all at the same instant.
      if (current()) this.minDelayMs = SHUTDOWN_SPREAD_MS[0] + Math.random() * SHUTDOWN_SPREAD_MS[1];
    });
    source.onerror = () => {
      if (current()) this.lost(opened);
    };
  }

  remember(event) {
    if (event.lastEventId) this.lastId = event.lastEventId;
  }

  url() {
    const url = new URL(this.options.path, window.location.href);
    const params = this.options.params ? this.options.params(this.lastId) : {};
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
    }
    if (this.lastId) url.searchParams.set("lastEventId", this.lastId);
    const token = this.options.token ? this.options.token() : null;
    if (token) url.searchParams.set("access_token", token);
    return url.toString();
  }

  async lost(opened) {
    if (this.resumeFrom !== null) {
      this.lastId = this.resumeFrom.id; // still owed a replay from there
      this.resumeFrom = null;
    }
    const failedUrl = this.source ? this.source.url : this.url();
    this.closeSource();
    if (this.lostAt === null) this.lostAt = Date.now();
    const generation = this.generation;
    // An EventSource that never opened hides the status code: ask once with fetch.
    const { status, retryAfterMs } = opened ? { status: 0, retryAfterMs: 0 } : await probe(failedUrl);
    if (generation !== this.generation) return; // restarted meanwhile
    if (status === 401) {
      const sent = new URL(failedUrl).searchParams.get("access_token");
      const token = this.options.token ? this.options.token() : null;
      if (token && token !== sent) {
        this.connect(); // a new token arrived while this attempt was failing
        return;
      }
      this.setPhase(Phase.UNAUTHORIZED);
      if (this.options.onUnauthorized) this.options.onUnauthorized(Boolean(sent));
      return; // wait for retryNow() once a token is given
    }
    if (status === 400 && this.options.onRejected) {
      this.options.onRejected(failedUrl);
      return;
    }
    const delay = Math.max(this.backoff.next(), this.minDelayMs, retryAfterMs);
    this.minDelayMs = 0;
    this.schedule(delay);
  }

  schedule(delayMs) {
    this.nextAttemptAt = Date.now() + delayMs;
    this.setPhase(Phase.RECONNECTING);
    this.timer = setTimeout(() => this.connect(), delayMs);
  }

  closeSource() {
    if (this.source !== null) {
      this.source.onopen = this.source.onmessage = this.source.onerror = null;
      this.source.close();
      this.source = null;
    }
  }

  setPhase(phase, detail = {}) {
    this.phase = phase;
    this.options.onPhase(phase, {
      ...detail,
      lostAt: this.lostAt,
      nextAttemptAt: this.nextAttemptAt,
      attempts: this.backoff.attempts,
    });
  }
}

async function probe(url) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
  try {
    const response = await fetch(url, {
      headers: { Accept: "text/event-stream" },
      cache: "no-store",
      signal: controller.signal,
    });
    const retryAfter = Number(response.headers.get("Retry-After"));
    const retryAfterMs = Number.isFinite(retryAfter) ? Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS) : 0;
    return { status: response.status, retryAfterMs };
  } catch {
    return { status: 0, retryAfterMs: 0 }; // unreachable
  } finally {
    clearTimeout(timer);
    controller.abort(); // a 200 here is a live stream: do not keep it open
  }
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
