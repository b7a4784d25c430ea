// Timing capture: events with the page's monotonic clock (performance.now()), posted in batches
// to /api/sessions/{id}/events; the server stamps and stores them append-only.
"use strict";

class TimingRecorder {
  constructor(sessionId, idleMs) {
    this.sessionId = sessionId;
    this.idleMs = idleMs;
    this.queue = [];
    this.burst = null;
    this.firstInputSent = false;
    this.idle = false;
    this.idleTimer = null;
    this.flushTimer = setInterval(() => this.flush(), 2000);
    this.watchActivity();
  }

  record(type, payload = {}, clientMs = performance.now()) {
    this.queue.push({ type, client_ms: clientMs, payload });
  }

  async flush(options = {}) {
    if (!this.queue.length) return;
    const batch = this.queue.splice(0, this.queue.length);
    try {
      await radraft.api("POST", `/api/sessions/${this.sessionId}/events`, batch, options);
    } catch (failure) {
      if (failure.status !== 409) this.queue.unshift(...batch);  // 409: the session has ended
    }
  }

  // One input event per burst of typing: keystrokes, characters inserted and deleted, paste.
  input(inserted, deleted, { keystroke = false, paste = false } = {}) {
    const now = performance.now();
    if (!this.firstInputSent) {
      this.firstInputSent = true;
      this.record("first_input", {}, now);
    }
    if (!this.burst) this.burst = { start: now, keystrokes: 0, inserted: 0, deleted: 0, paste: false };
    this.burst.inserted += inserted;
    this.burst.deleted += deleted;
    this.burst.keystrokes += keystroke ? 1 : 0;
    this.burst.paste = this.burst.paste || paste;
    clearTimeout(this.burstTimer);
    this.burstTimer = setTimeout(() => this.endBurst(), 1000);
  }

  endBurst() {
    if (!this.burst) return;
    const { start, ...counts } = this.burst;
    this.record("input", { ...counts, started_ms: start });
    this.burst = null;
  }

  activity() {
    if (this.idle) {
      this.idle = false;
      this.record("idle_end");
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idle = true;
      this.record("idle_start");
    }, this.idleMs);
  }

  watchActivity() {
    for (const type of ["keydown", "pointermove", "pointerdown", "wheel", "scroll"]) {
      window.addEventListener(type, () => this.activity(), { passive: true, capture: true });
    }
    window.addEventListener("focus", () => this.record("focus"));
    window.addEventListener("blur", () => this.record("blur"));
    document.addEventListener("visibilitychange", () => {
      this.record("visibility", { state: document.visibilityState });
      if (document.visibilityState === "hidden") {
        this.endBurst();
        this.flush({ keepalive: true });
      }
    });
    this.activity();
  }

  async finish(clickMs, action) {
    this.endBurst();
    clearInterval(this.flushTimer);
    clearTimeout(this.idleTimer);
    this.record("submit", { action }, clickMs);
    await this.flush();
  }
}

// Characters inserted and deleted between two values of a text box (one contiguous change).
function textChange(before, after) {
  let prefix = 0;
  while (prefix < before.length && prefix < after.length && before[prefix] === after[prefix]) prefix++;
  let suffix = 0;
  while (
    suffix < before.length - prefix && suffix < after.length - prefix &&
    before[before.length - 1 - suffix] === after[after.length - 1 - suffix]
  ) suffix++;
  return { deleted: before.length - prefix - suffix, inserted: after.length - prefix - suffix };
}
