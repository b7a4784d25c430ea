// The admin page: list accounts, add one, change role or active, reset a password.
"use strict";

const userRows = document.getElementById("user-rows");
const roles = userRows.dataset.roles.split(",");
const usersError = document.getElementById("users-error");

async function change(user, body) {
  usersError.textContent = "";
  try {
    await radraft.api("PATCH", `/api/users/${user.id}`, body);
  } catch (failure) {
    usersError.textContent = failure.message;
  }
  await loadUsers();
}

function userRow(user) {
  const row = document.createElement("tr");
  row.dataset.username = user.username;
  row.append(radraft.text("td", user.username), radraft.text("td", user.full_name));
  const roleCell = document.createElement("td");
  const select = document.createElement("select");
  select.className = "role";
  for (const role of roles) {
    const option = radraft.text("option", role);
    option.selected = role === user.role;
    select.append(option);
  }
  select.addEventListener("change", () => change(user, { role: select.value }));
  roleCell.append(select);
  const activeCell = document.createElement("td");
  const active = document.createElement("input");
  active.type = "checkbox";
  active.className = "active";
  active.checked = user.active;
  active.addEventListener("change", () => change(user, { active: active.checked }));
  activeCell.append(active);
  const passwordCell = document.createElement("td");
  const reset = radraft.text("button", "Reset…");
  reset.type = "button";
  reset.addEventListener("click", () => {
    const password = window.prompt(`New password for ${user.username} (10+ characters)`);
    if (password) change(user, { password });
  });
  passwordCell.append(reset);
  row.append(roleCell, activeCell, passwordCell);
  return row;
}

async function loadUsers() {
  const users = await radraft.api("GET", "/api/users");
  userRows.replaceChildren(...users.map(userRow));
}

document.getElementById("add-user").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  usersError.textContent = "";
  try {
    await radraft.api("POST", "/api/users", Object.fromEntries(new FormData(form)));
    form.reset();
  } catch (failure) {
    usersError.textContent = failure.message;
  }
  await loadUsers();
});
loadUsers();
