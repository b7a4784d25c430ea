// The login form posts JSON to /api/login and goes where the user was headed.
"use strict";

const loginForm = document.getElementById("login-form");
loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    await radraft.api("POST", "/api/login", {
      username: document.getElementById("username").value,
      password: document.getElementById("password").value,
    });
    window.location.assign(loginForm.dataset.next || "/worklist");
  } catch (failure) {
    error.textContent = failure.message;
  }
});
