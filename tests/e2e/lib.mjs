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
  // Everything it writes, for the token watcher's look at the log.
  child.output = "";
  child.stdout.on("data", (d) => { child.output += d; });
  child.stderr.on("data", (d) => {
    child.output += d;
    if (process.env.E2E_VERBOSE) process.stderr.write(d);
  });
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
  // At info, so the log the watcher reads has the request lines in it.
  const child = run(bin, ["demo", "--port", "0"], { env: { ...process.env, RUST_LOG: "info" } });
  const m = await waitForLine(child, /open:\s+(http:\/\/127\.0\.0\.1:\d+)/);
  // Cognito-style logout (`/logout?client_id=&logout_uri=`): no ID token in it.
  return { url: m[1], stop: () => child.kill("SIGINT"), child, log: () => child.output, idpLogout: null };
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
  const gw = run(bin, ["serve", "--config", join(dir, "gateway.toml")], { env: { ...process.env, RUST_LOG: "info" } });
  await waitForHttp(`http://127.0.0.1:${admin}/readyz`);
  return {
    url: gateway,
    sameSite: "Lax",
    log: () => gw.output,
    // The IdP's end_session_endpoint (RP-Initiated Logout: takes id_token_hint).
    idpLogout: `${issuer}/session/end`,
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
 * The one token the browser is meant to carry, and only while the gateway
 * sends it: the ended session's ID token as `id_token_hint` in the IdP's
 * logout URL (OpenID Connect RP-Initiated Logout 1.0 §2; docs/security.md,
 * "Sign-out"). The watcher exempts exactly that parameter, in the gateway's
 * answer to `/auth/logout` and in the navigation to the IdP's logout endpoint,
 * and nothing else. When the gateway stops sending the hint, the journey
 * against the test IdP fails until this is set to `false` (or removed with
 * its uses below): then a hint anywhere is a leak like any other token.
 */
export const ID_TOKEN_HINT_EXEMPTION = true;

/** Where a token was found, without the token: a URL up to its query. */
const place = (url) => url.split("?")[0];

/**
 * Watches everything the browser holds or sends for a token (a JWT): the URL
 * of every request it makes (any origin), every response from the gateway's
 * `origin` (headers, Set-Cookie included, and body), and, through
 * `checkCookies`/`checkLog`, its cookie jar and the gateway's log. `idpLogout`
 * is the IdP's end-session endpoint where the gateway sends `id_token_hint`
 * (null where it sends none). `leaks` lists where tokens were found;
 * `hints` counts the exempted `id_token_hint`s.
 */
export function watchForTokens(page, origin, idpLogout = null) {
  const leaks = [];
  const watch = { leaks, hints: 0 };
  const check = (where, text) => {
    if (text && JWT_RE.test(text)) leaks.push(where);
  };
  // `url` without its `id_token_hint` when it is the IdP's logout endpoint
  // and the exemption stands; otherwise `url` unchanged.
  const withoutHint = (url) => {
    if (!ID_TOKEN_HINT_EXEMPTION || !idpLogout) return url;
    let u;
    try { u = new URL(url); } catch { return url; }
    if (`${u.origin}${u.pathname}` !== idpLogout || !u.searchParams.has("id_token_hint")) return url;
    u.searchParams.delete("id_token_hint");
    watch.hints += 1;
    return u.toString();
  };
  page.on("request", (req) => {
    const url = req.isNavigationRequest() ? withoutHint(req.url()) : req.url();
    check(`request URL ${place(req.url())}`, url);
  });
  page.on("response", async (resp) => {
    if (!resp.url().startsWith(origin)) return;
    const where = place(resp.url());
    const logout = new URL(resp.url()).pathname === "/auth/logout";
    for (const [k, v] of Object.entries(resp.headers())) {
      const value = logout && k === "location" ? withoutHint(v) : v;
      check(`${where} header ${k}`, value);
    }
    let body;
    try { body = await resp.text(); } catch { return; /* redirects and aborted loads have no body */ }
    if (logout) {
      // The SPA's sign-out: `{ "redirect": <the IdP's logout URL> }`.
      try {
        const json = JSON.parse(body);
        if (typeof json.redirect === "string") json.redirect = withoutHint(json.redirect);
        body = JSON.stringify(json);
      } catch { /* not JSON: checked as it is */ }
    }
    check(`${where} body`, body);
  });
  /** Every cookie of the browser context, any domain. */
  watch.checkCookies = async (context) => {
    for (const c of await context.cookies()) check(`cookie ${c.name} (${c.domain})`, c.value);
  };
  /** Everything the gateway process wrote. */
  watch.checkLog = (log) => check("the gateway's log", log);
  return watch;
}
