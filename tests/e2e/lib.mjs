// Shared pieces of the browser tests: start the gateway (demo, or against the
// oidc-provider test IdP), launch Debian's Chromium through playwright-core,
// and watch every response the page receives for tokens.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { once } from "node:events";
import { chromium } from "playwright-core";
import { createRemoteJWKSet, jwtVerify } from "jose";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const bin = process.env.OIDC_BFF_BIN || join(root, "target/debug/oidc-bff");
export const shots = join(root, "target/e2e");
mkdirSync(shots, { recursive: true });

/** A JWT anywhere in a text: three base64url parts, the first two JSON objects. */
export const JWT_RE = /eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}/;

const children = [];
process.on("exit", () => children.forEach((c) => c.kill("SIGKILL")));

function run(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], ...opts });
  children.push(child);
  child.stderr.on("data", (d) => { if (process.env.E2E_VERBOSE) process.stderr.write(d); });
  return child;
}

/** Resolves with the first stdout line matching `re`, or fails after `ms`. */
function waitForLine(child, re, ms = 60000) {
  return new Promise((ok, fail) => {
    let buf = "";
    const timer = setTimeout(() => fail(new Error(`timed out waiting for ${re} (got: ${buf})`)), ms);
    child.stdout.on("data", (d) => {
      buf += d.toString();
      const m = buf.match(re);
      if (m) { clearTimeout(timer); ok(m); }
    });
    child.on("exit", (code) => { clearTimeout(timer); fail(new Error(`exited with ${code} before ${re}; output: ${buf}`)); });
  });
}

export async function freePort() {
  const s = createServer();
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  const { port } = s.address();
  s.close();
  await once(s, "close");
  return port;
}

async function waitForHttp(url, ms = 30000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not become ready`);
}

/** `oidc-bff demo --port 0`; resolves with its URL. */
export async function startDemo() {
  const child = run(bin, ["demo", "--port", "0"], { env: { ...process.env, RUST_LOG: "warn" } });
  const m = await waitForLine(child, /open:\s+(http:\/\/127\.0\.0\.1:\d+)/);
  return { url: m[1], stop: () => child.kill("SIGINT"), child };
}

/**
 * The oidc-provider test IdP, an echo API that verifies its access tokens, and
 * the gateway (`oidc-bff serve`) configured for them, serving the demo SPA.
 */
export async function startWithTestIdp() {
  const port = await freePort();
  const admin = await freePort();
  const gateway = `http://127.0.0.1:${port}`;
  const idp = run("node", [join(root, "tests/idp/server.mjs"), JSON.stringify({
    clients: [{
      client_id: "bff",
      client_secret: "bff-secret",
      redirect_uris: [`${gateway}/auth/callback`],
      post_logout_redirect_uris: [`${gateway}/auth/signed-out`],
    }],
  })]);
  const issuer = JSON.parse((await waitForLine(idp, /^(\{.*\})\n/m))[1]).issuer;

  // The API: verifies the bearer token against the IdP's JWKS, echoes claims, never the token.
  const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  const api = createServer(async (req, res) => {
    const auth = req.headers.authorization || "";
    try {
      const { payload } = await jwtVerify(auth.replace(/^Bearer /, ""), jwks, { issuer });
      const headers = { ...req.headers, authorization: "Bearer [verified access token, not shown]" };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ verified: true, claims: payload, headers }));
    } catch (e) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ verified: false, error: String(e.message) }));
    }
  });
  api.listen(0, "127.0.0.1");
  await once(api, "listening");

  const dir = mkdtempSync(join(tmpdir(), "oidc-bff-e2e-"));
  const key = (await new Promise((ok) => {
    const k = run(bin, ["generate-key"]);
    let out = "";
    k.stdout.on("data", (d) => (out += d));
    k.on("exit", () => ok(out.trim()));
  }));
  const config = `
[server]
listen = "127.0.0.1:${port}"
admin_listen = "127.0.0.1:${admin}"
public_url = "${gateway}"

[provider]
issuer = "${issuer}"
client_id = "bff"
client_secret = "bff-secret"
scopes = ["openid", "email", "profile", "groups", "offline_access", "api:read"]
insecure_allow_http = true

[session]
keys = ["${key}"]
same_site = "lax"

[[route]]
path = "/api/"
upstream = "http://127.0.0.1:${api.address().port}"

[spa]
dir = "${join(root, "src/demo/spa")}"
`;
  writeFileSync(join(dir, "gateway.toml"), config);
  const gw = run(bin, ["serve", "--config", join(dir, "gateway.toml")], { env: { ...process.env, RUST_LOG: "warn" } });
  await waitForHttp(`http://127.0.0.1:${admin}/readyz`);
  return {
    url: gateway,
    sameSite: "Lax",
    stop: () => { gw.kill("SIGTERM"); idp.kill("SIGTERM"); api.close(); },
  };
}

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  return { browser, context };
}

/**
 * Records every response from `origin` the page receives and any JWT found in
 * its body, so a test can assert that no token ever reaches the browser.
 */
export function watchForTokens(page, origin) {
  const leaks = [];
  // The one token the browser is meant to carry: the ended session's ID token
  // as `id_token_hint` in the IdP's logout URL (OpenID Connect RP-Initiated
  // Logout 1.0 §2; docs/security.md, "Sign-out", says so). Anywhere else a
  // JWT in a response is a leak. (Whether the logout answer's body can still be
  // read before the page navigates away is a race, so it must not decide.)
  const visible = (text) => text.replace(/[?&]id_token_hint=[A-Za-z0-9_.-]+/g, "");
  page.on("response", async (resp) => {
    if (!resp.url().startsWith(origin)) return;
    for (const [k, v] of Object.entries(resp.headers())) {
      if (k !== "set-cookie" && JWT_RE.test(visible(v))) leaks.push(`${resp.url()} header ${k}`);
    }
    try {
      const body = await resp.text();
      if (JWT_RE.test(visible(body))) leaks.push(resp.url());
    } catch { /* redirects and aborted loads have no body */ }
  });
  return leaks;
}
