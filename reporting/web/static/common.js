// Shared by every page: the API helper (JSON, CSRF header, clear errors) and log out.
"use strict";

const radraft = {
  csrf: document.body.dataset.csrf || "",

  async api(method, url, body, options = {}) {
    const headers = { "X-CSRF-Token": radraft.csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      keepalive: Boolean(options.keepalive),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const detail = data && data.detail;
      const message = typeof detail === "string" ? detail : JSON.stringify(detail);
      const error = new Error(message || `HTTP ${response.status}`);
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  },

  text(tag, content, className) {
    const element = document.createElement(tag);
    element.textContent = content;
    if (className) element.className = className;
    return element;
  },
};

const logoutButton = document.getElementById("logout");
if (logoutButton) {
  logoutButton.addEventListener("click", async () => {
    await radraft.api("POST", "/api/logout");
    window.location.assign("/login");
  });
}
