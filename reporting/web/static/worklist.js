// The worklist refreshes itself from /api/worklist with the chosen filters.
"use strict";

const worklistRoot = document.getElementById("worklist");
const rows = document.getElementById("worklist-rows");
const statusFilter = document.getElementById("filter-status");
const textFilter = document.getElementById("filter-text");
const priorityFilter = document.getElementById("filter-priority");

function age(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function renderRow(study) {
  const row = document.createElement("tr");
  row.className = `status-${study.worklist_status}`;
  row.dataset.studyUid = study.study_instance_uid;
  row.append(radraft.text("td", study.priority > 0 ? `P${study.priority}` : ""));
  const status = radraft.text("td", study.worklist_status, "status");
  if (study.withdrawn) {
    status.append(radraft.text("span", " (another patient's)", "identity-flag"));
  } else if (study.identity_disputed) {
    status.append(radraft.text("span", " identity disputed", "identity-flag"));
  }
  row.append(status);
  const accession = document.createElement("td");
  const link = radraft.text("a", study.accession_number || study.study_instance_uid);
  link.href = `/cases/${encodeURIComponent(study.study_instance_uid)}`;
  link.className = "open-case";
  accession.append(link);
  row.append(accession);
  row.append(radraft.text("td", study.patient_name || ""));
  row.append(radraft.text("td", study.study_description || ""));
  row.append(radraft.text("td", String(study.images)));
  row.append(radraft.text("td", age(study.age_seconds)));
  return row;
}

async function refresh() {
  const query = new URLSearchParams();
  if (statusFilter.value) query.set("status", statusFilter.value);
  if (textFilter.value.trim()) query.set("text", textFilter.value.trim());
  if (priorityFilter.checked) query.set("min_priority", "1");
  try {
    const studies = await radraft.api("GET", `/api/worklist?${query}`);
    rows.replaceChildren(...studies.map(renderRow));
    if (!studies.length) {
      const empty = radraft.text("td", "No studies.", "muted");
      empty.colSpan = 7;
      const row = document.createElement("tr");
      row.append(empty);
      rows.append(row);
    }
    document.getElementById("updated").textContent =
      `updated ${new Date().toLocaleTimeString()}`;
  } catch (failure) {
    if (failure.status === 401) window.location.assign("/login?next=/worklist");
    document.getElementById("updated").textContent = `not updated: ${failure.message}`;
  }
}

for (const control of [statusFilter, priorityFilter]) control.addEventListener("change", refresh);
textFilter.addEventListener("input", refresh);
document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
refresh();
setInterval(refresh, Number(worklistRoot.dataset.pollMs) || 5000);
