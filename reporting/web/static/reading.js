// A blinded timing-study read: timing events from open to submit, then the (untimed) form.
"use strict";

(async () => {
  const root = document.getElementById("reading");
  const readId = root.dataset.readId;
  const findings = document.getElementById("findings");
  const impression = document.getElementById("impression");
  const readForm = document.getElementById("read-form");
  const feedbackForm = document.getElementById("feedback-form");
  const error = document.getElementById("read-error");
  const openedMs = performance.now();

  function showFeedback() {
    readForm.querySelectorAll("textarea, button").forEach((e) => { e.disabled = true; });
    feedbackForm.hidden = false;
  }

  feedbackForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(feedbackForm);
    const body = { free_text: form.get("free_text") || "" };
    if (root.dataset.hasDraft === "true") {
      body.edit_reasons = form.getAll("edit_reasons");
      body.helps_answer_indication = Number(form.get("helps_answer_indication"));
      body.efficiency = form.get("efficiency");
      body.thinks_model_wrote_draft = form.get("thinks_model_wrote_draft") === "true";
    }
    await radraft.api("POST", `/api/reading/${readId}/feedback`, body);
    window.location.assign("/reading");
  });

  if (root.dataset.submitted === "true") {
    if (root.dataset.feedbackGiven === "true") window.location.assign("/reading");
    else showFeedback();
    root.dataset.loaded = "true";
    return;
  }

  const opened = await radraft.api("POST", `/api/reading/${readId}/session`);
  const recorder = new TimingRecorder(opened.id, Number(root.dataset.idleMs) || 30000);
  recorder.record("opened", opened.resumed ? { resumed: true } : {}, openedMs);
  recorder.record("draft_shown", { empty: root.dataset.hasDraft !== "true" });
  viewer.ready.then((shown) => { if (shown) recorder.record("images_rendered"); });
  const last = { findings: findings.value, impression: impression.value };
  for (const box of [findings, impression]) {
    box.addEventListener("input", (event) => {
      const change = textChange(last[box.id], box.value);
      const paste = event.inputType === "insertFromPaste" || event.inputType === "insertFromDrop";
      recorder.input(change.inserted, change.deleted, { keystroke: !paste, paste });
      last[box.id] = box.value;
    });
  }
  window.addEventListener("pagehide", () => { recorder.endBurst(); recorder.flush({ keepalive: true }); });

  readForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const clickMs = performance.now();
    recorder.endBurst();
    await recorder.flush();
    try {
      await radraft.api("POST", `/api/reading/${readId}/submit`,
        { findings: findings.value, impression: impression.value });
    } catch (failure) {
      error.textContent = failure.message;
      return;
    }
    await recorder.finish(clickMs, "submit");
    showFeedback();
  });
  root.dataset.loaded = "true";
})();
