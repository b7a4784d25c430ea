// The case page: load the report, resume the edit session, autosave, transitions, revision
// history with word diffs. Everything goes through the REST API.
"use strict";

(() => {
  const root = document.getElementById("case");
  const reportId = root.dataset.reportId;
  if (!reportId) return;
  const role = root.dataset.role;
  const canEdit = root.dataset.canEdit === "true";
  const findings = document.getElementById("findings");
  const impression = document.getElementById("impression");
  const saveStatus = document.getElementById("save-status");
  const editorError = document.getElementById("editor-error");
  const storageKey = `radraft-autosave-${root.dataset.userId}-${reportId}`;
  const openedMs = performance.now();
  let report = null;
  let recorder = null;
  let sessionId = null;
  let saveTimer = null;
  let lastValues = { findings: "", impression: "" };

  const ACTIONS = {
    resident: { DRAFTED: ["save", "submit"] },
    attending: {
      DRAFTED: ["save", "sign"],
      PRELIMINARY: ["save", "sign", "send-back"],
      FINAL: ["save", "amend"],
      AMENDED: ["save", "amend"],
    },
  };

  function allowedActions() {
    if (!canEdit) return [];  // not a reader's role, or a study withdrawn as another patient's
    return ((ACTIONS[role] || {})[report.state]) || [];
  }

  function renderState() {
    document.getElementById("report-state").textContent = report.state;
    document.getElementById("report-version").textContent = report.version;
    const allowed = allowedActions();
    for (const action of ["save", "submit", "sign", "send-back", "amend"]) {
      document.getElementById(action).hidden = !allowed.includes(action);
    }
    const editable = canEdit && allowed.length > 0;
    findings.readOnly = !editable;
    impression.readOnly = !editable;
    return editable;
  }

  function renderRevisions() {
    const list = document.getElementById("revisions");
    const older = document.getElementById("diff-old");
    const newer = document.getElementById("diff-new");
    list.replaceChildren();
    older.replaceChildren();
    newer.replaceChildren();
    for (const revision of report.revisions) {
      const author = revision.author_name
        ? `${revision.author_name} (${revision.author_role})`
        : (revision.source_label || "draft");
      const when = new Date(revision.created_at).toLocaleString();
      list.append(radraft.text("li", `#${revision.number} ${revision.state} · ${author} · ${when}`));
      older.append(radraft.text("option", String(revision.number)));
      newer.append(radraft.text("option", String(revision.number)));
    }
    older.value = String(report.revisions[0].number);
    newer.value = String(report.revisions[report.revisions.length - 1].number);
  }

  async function showDiff() {
    const diff = await radraft.api(
      "GET",
      `/api/reports/${reportId}/diff?old=${document.getElementById("diff-old").value}` +
        `&new=${document.getElementById("diff-new").value}`,
    );
    const box = document.getElementById("diff");
    box.replaceChildren();
    for (const section of ["findings", "impression"]) {
      const block = document.createElement("div");
      block.append(radraft.text("h3", section[0].toUpperCase() + section.slice(1)));
      const text = document.createElement("p");
      for (const piece of diff[section]) {
        const tag = { insert: "ins", delete: "del", equal: "span" }[piece.op];
        text.append(radraft.text(tag, piece.text));
      }
      block.append(text);
      box.append(block);
    }
  }

  function currentText() {
    return { findings: findings.value, impression: impression.value };
  }

  function keepLocally() {
    localStorage.setItem(storageKey, JSON.stringify({
      ...currentText(), base_version: report.version, at: Date.now(),
    }));
  }

  async function saveNow(options = {}) {
    clearTimeout(saveTimer);
    if (!sessionId) return;
    try {
      await radraft.api("PUT", `/api/sessions/${sessionId}/autosave`,
        { base_version: report.version, ...currentText() }, options);
      saveStatus.textContent = `saved ${new Date().toLocaleTimeString()}`;
    } catch (failure) {
      saveStatus.textContent = `not saved: ${failure.message}`;
    }
  }

  function onInput(event) {
    const now = currentText();
    const change = textChange(lastValues[event.target.id], now[event.target.id]);
    const paste = event.inputType === "insertFromPaste" || event.inputType === "insertFromDrop";
    recorder.input(change.inserted, change.deleted, { keystroke: !paste, paste });
    lastValues = now;
    keepLocally();
    saveStatus.textContent = "editing…";
    clearTimeout(saveTimer);
    saveTimer = setTimeout(saveNow, 1000);
  }

  async function transition(action) {
    const clickMs = performance.now();
    editorError.textContent = "";
    recorder.endBurst();
    await recorder.flush();
    try {
      await radraft.api("POST", `/api/reports/${reportId}/${action}`, {
        expected_version: report.version, ...currentText(),
      });
    } catch (failure) {
      if (failure.status === 409 && failure.data && failure.data.current_version !== undefined) {
        editorError.textContent =
          `Someone changed this report (now version ${failure.data.current_version}). ` +
          "Your text is kept here; reload to see their version.";
      } else {
        editorError.textContent = failure.message;
      }
      return;
    }
    await recorder.finish(clickMs, action);
    localStorage.removeItem(storageKey);
    window.location.assign("/worklist");
  }

  function restoreText(autosave) {
    const local = JSON.parse(localStorage.getItem(storageKey) || "null");
    const server = autosave && autosave.base_version === report.version ? autosave : null;
    const serverAt = server ? Date.parse(server.saved_at) : 0;
    if (local && local.base_version === report.version && local.at >= serverAt) return local;
    if (server) return server;
    if (autosave || local) {
      editorError.textContent =
        "Your unsaved text was written against an older version of this report and was not restored.";
    }
    return null;
  }

  async function start() {
    report = await radraft.api("GET", `/api/reports/${reportId}`);
    const newest = report.revisions[report.revisions.length - 1];
    const editable = renderState();
    renderRevisions();
    let text = { findings: newest.findings, impression: newest.impression };
    if (editable) {
      const opened = await radraft.api("POST", `/api/reports/${reportId}/sessions`);
      sessionId = opened.id;
      recorder = new TimingRecorder(sessionId, Number(root.dataset.idleMs) || 30000);
      if (!opened.resumed) recorder.record("opened", {}, openedMs);
      else recorder.record("opened", { resumed: true }, openedMs);
      text = restoreText(opened.autosave) || text;
    }
    findings.value = text.findings;
    impression.value = text.impression;
    lastValues = currentText();
    if (recorder) {
      recorder.record("draft_shown", { empty: !newest.findings && !newest.impression });
      viewer.ready.then((shown) => { if (shown) recorder.record("images_rendered"); });
      for (const box of [findings, impression]) box.addEventListener("input", onInput);
      window.addEventListener("pagehide", () => {
        recorder.endBurst();
        recorder.flush({ keepalive: true });
      });
      document.getElementById("save").addEventListener("click", () => saveNow());
      for (const action of ["submit", "sign", "send-back", "amend"]) {
        document.getElementById(action).addEventListener("click", () => transition(action));
      }
    }
    document.getElementById("diff-show").addEventListener("click", showDiff);
    root.dataset.loaded = "true";
  }

  start().catch((failure) => { editorError.textContent = failure.message; });
})();
