// The demo SPA: plain JavaScript, no build step. It asks the gateway who is
// signed in (/auth/user), calls the API through the gateway (/api/...), and
// signs out. Every call carries X-CSRF, which the gateway requires.
"use strict";

const csrf = { "X-CSRF": "1" };
const $ = (id) => document.getElementById(id);

function show(signedIn) {
  $("signed-in").hidden = !signedIn;
  $("signed-out").hidden = signedIn;
}

function clearUser() {
  for (const id of ["user-name", "user-sub", "user-email", "user-groups", "user-expires"]) $(id).textContent = "";
  $("api-result").textContent = "(not called yet)";
}

async function loadUser() {
  clearUser();
  const resp = await fetch("/auth/user", { headers: csrf, cache: "no-store" });
  if (resp.status === 401) {
    show(false);
    $("status").textContent = "You are signed out.";
    return;
  }
  if (!resp.ok) {
    $("status").textContent = `Could not load the user (${resp.status}).`;
    return;
  }
  const user = await resp.json();
  const c = user.claims || {};
  $("user-name").textContent = c.name || c["cognito:username"] || c.preferred_username || user.sub;
  $("user-sub").textContent = user.sub;
  $("user-email").textContent = c.email || "(none)";
  const groups = c["cognito:groups"] || c.groups || [];
  $("user-groups").textContent = groups.length ? groups.join(", ") : "(none)";
  $("user-expires").textContent = new Date(user.expires_at * 1000).toLocaleString();
  show(true);
  $("status").textContent = "Signed in.";
}

function route() {
  $("route-note").textContent = location.pathname === "/profile" ? "You are on the /profile page (a client-side route)." : "";
}

$("sign-in").addEventListener("click", () => {
  location.href = "/auth/login?return_to=" + encodeURIComponent(location.pathname + location.search);
});

$("call-api").addEventListener("click", async () => {
  const resp = await fetch("/api/whoami", { headers: csrf });
  const body = await resp.json().catch(() => ({}));
  $("api-result").textContent = JSON.stringify({ status: resp.status, claims: body.claims, headers: body.headers }, null, 2);
});

// A route with token = "client": the API receives the gateway's own
// client-credentials token, and the user's identity in a header.
$("call-machine").addEventListener("click", async () => {
  const resp = await fetch("/api/machine/whoami", { headers: csrf });
  const body = await resp.json().catch(() => ({}));
  $("api-result").textContent = JSON.stringify({ status: resp.status, claims: body.claims, headers: body.headers }, null, 2);
});

$("sign-out").addEventListener("click", async () => {
  const resp = await fetch("/auth/logout", { method: "POST", headers: csrf });
  const body = await resp.json();
  clearUser();
  location.href = body.redirect;
});

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-route]");
  if (!a) return;
  e.preventDefault();
  history.pushState({}, "", a.getAttribute("href"));
  route();
});
window.addEventListener("popstate", route);

// Back/forward may restore this page from the browser's cache: ask again, so a
// signed-out user's data never reappears.
window.addEventListener("pageshow", (e) => {
  if (e.persisted) loadUser();
});

route();
loadUser();
