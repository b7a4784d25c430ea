// Admin page: list timing studies with progress; create one from a YAML protocol.
"use strict";

async function loadStudies() {
  const studies = await radraft.api("GET", "/api/reader-studies");
  document.getElementById("study-rows").replaceChildren(...studies.map((study) => {
    const row = document.createElement("tr");
    const counts = Object.entries(study.reads).map(([k, v]) => `${k}: ${v}`).join(", ");
    row.append(radraft.text("td", study.name), radraft.text("td", String(study.seed)),
      radraft.text("td", counts));
    return row;
  }));
}

document.getElementById("create-study").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("studies-error");
  error.textContent = "";
  try {
    await radraft.api("POST", "/api/reader-studies",
      { protocol: document.getElementById("protocol").value });
  } catch (failure) {
    error.textContent = failure.message;
  }
  await loadStudies();
});
loadStudies();
