// Browser tests: sign in, see the user, call the API, sign out, in a real
// Chromium, against `oidc-bff demo` (its Cognito-flavoured development IdP)
// and against the oidc-provider test IdP. Screenshots go to target/e2e/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDemo, startWithTestIdp, launch, watchForTokens, shots, JWT_RE, ID_TOKEN_HINT_EXEMPTION } from "./lib.mjs";

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

/** The whole journey, with the IdP-specific login step passed in. */
async function journey(t, { url, sameSite, login, confirmLogout, expectName, prefix, log, idpLogout }) {
  const { browser, context } = await launch();
  t.after(() => browser.close());
  const page = await context.newPage();
  const watch = watchForTokens(page, url, idpLogout);
  const { leaks } = watch;

  await page.goto(url);
  await page.waitForSelector("#sign-in:visible");
  await shot(page, `${prefix}-1-signed-out`);

  await page.click("#sign-in");
  await login(page);
  await page.waitForSelector("#signed-in:visible");
  assert.equal(await page.textContent("#user-name"), expectName);
  assert.match(await page.textContent("#user-groups"), /admins/);
  await shot(page, `${prefix}-2-signed-in`);

  // The session cookie: HttpOnly (not in document.cookie), the configured SameSite.
  const docCookie = await page.evaluate(() => document.cookie);
  assert.doesNotMatch(docCookie, /oidc_bff/);
  const cookies = await context.cookies(url);
  const session = cookies.find((c) => c.name === "oidc_bff");
  assert.ok(session, `session cookie present: ${JSON.stringify(cookies.map((c) => c.name))}`);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, sameSite);
  assert.equal(session.path, "/");

  await page.click("#call-api");
  await page.waitForFunction(() => document.querySelector("#api-result").textContent.includes("claims"));
  const api = JSON.parse(await page.textContent("#api-result"));
  assert.equal(api.status, 200);
  assert.ok(api.claims && api.claims.sub, "the API verified the token and shows its claims");
  await shot(page, `${prefix}-3-api`);

  // No token anywhere the page can reach.
  assert.doesNotMatch(await page.content(), JWT_RE);
  const storage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.doesNotMatch(storage, JWT_RE);
  await watch.checkCookies(context);
  assert.deepEqual(leaks, [], "no URL, response from the gateway or cookie carried a token");

  // A deep link to a client-side route is served the app.
  await page.goto(`${url}/profile`);
  await page.waitForSelector("#signed-in:visible");
  assert.match(await page.textContent("#route-note"), /profile/);

  await page.click("#sign-out");
  if (confirmLogout) await confirmLogout(page);
  await page.waitForURL(/\/auth\/signed-out/);
  assert.match(await page.textContent("h1"), /signed out/i);
  await shot(page, `${prefix}-4-signed-out`);

  // After sign-out the API answers 401, and Back does not show her data.
  // (The signed-out page's CSP forbids scripts from fetching: ask with the browser's cookies instead.)
  const after = await context.request.get(`${url}/api/whoami`, { headers: { "X-CSRF": "1" } });
  assert.equal(after.status(), 401);
  assert.equal((await context.cookies(url)).find((c) => c.name === "oidc_bff"), undefined, "session cookie cleared");
  // Back until the app itself shows again (an IdP's logout confirmation may sit in between).
  for (let i = 0; i < 4 && !(page.url().startsWith(url) && !page.url().includes("/auth/")); i++) {
    await page.goBack();
  }
  assert.ok(page.url().startsWith(url), `back on the app: ${page.url()}`);
  await page.waitForSelector("#sign-in:visible");
  assert.equal((await page.textContent("#user-name")).trim(), "");
  assert.doesNotMatch(await page.content(), new RegExp(expectName));
  await shot(page, `${prefix}-5-back`);
  await watch.checkCookies(context);
  watch.checkLog(log());
  assert.deepEqual(leaks, [], "no URL, response from the gateway, cookie or log line carried a token");
  // The exemption lives only while the gateway sends the hint.
  if (idpLogout && ID_TOKEN_HINT_EXEMPTION) {
    assert.ok(watch.hints > 0,
      "the gateway no longer sends id_token_hint: set ID_TOKEN_HINT_EXEMPTION to false in tests/e2e/lib.mjs");
  } else {
    assert.equal(watch.hints, 0);
  }
}

test("demo: sign in as alice through the development IdP", async (t) => {
  const demo = await startDemo();
  t.after(demo.stop);
  await journey(t, {
    url: demo.url,
    log: demo.log,
    idpLogout: demo.idpLogout,
    sameSite: "Strict",
    expectName: "alice",
    prefix: "demo",
    login: async (page) => {
      await page.waitForSelector("input[name=username]");
      await shot(page, "demo-login-page");
      await page.fill("input[name=username]", "alice");
      await page.fill("input[name=password]", "alice-password");
      await page.click("button[type=submit]");
    },
  });
});

test("oidc-provider: the same journey against the test IdP", async (t) => {
  const stack = await startWithTestIdp();
  t.after(stack.stop);
  await journey(t, {
    url: stack.url,
    log: stack.log,
    idpLogout: stack.idpLogout,
    sameSite: "Lax",
    expectName: "Alice",
    prefix: "oidc-provider",
    login: async (page) => {
      await page.waitForSelector("input[name=login]");
      await page.fill("input[name=login]", "alice");
      await page.fill("input[name=password]", "any-password");
      await page.click("button[type=submit]");
      await page.waitForSelector("input[name=prompt][value=consent]", { state: "attached" });
      await page.click("button[type=submit]");
    },
    confirmLogout: async (page) => {
      // oidc-provider asks "Do you want to sign-out from …?" before ending its session.
      await page.waitForSelector("button[name=logout]");
      await shot(page, "oidc-provider-logout-confirm");
      await page.click("button[name=logout]");
    },
  });
});

test("demo: a route with token = \"client\" sends the gateway's machine token", async (t) => {
  const demo = await startDemo();
  t.after(demo.stop);
  const { browser, context } = await launch();
  t.after(() => browser.close());
  const page = await context.newPage();
  const watch = watchForTokens(page, demo.url, demo.idpLogout);
  const { leaks } = watch;

  await page.goto(demo.url);
  await page.click("#sign-in");
  await page.waitForSelector("input[name=username]");
  await page.fill("input[name=username]", "alice");
  await page.fill("input[name=password]", "alice-password");
  await page.click("button[type=submit]");
  await page.waitForSelector("#signed-in:visible");
  const sub = (await page.textContent("#user-sub")).trim();

  await page.click("#call-machine");
  await page.waitForFunction(() => document.querySelector("#api-result").textContent.includes("claims"));
  const api = JSON.parse(await page.textContent("#api-result"));
  assert.equal(api.status, 200);
  // The echo API verified a Cognito M2M token: the gateway's machine client, no user.
  assert.equal(api.claims.sub, "demo-machine");
  assert.equal(api.claims.client_id, "demo-machine");
  assert.equal(api.claims.token_use, "access");
  assert.equal(api.claims.scope, "echo/read");
  assert.equal(api.claims.username, undefined);
  // On whose behalf: the user, in a header the gateway set.
  assert.equal(api.headers["x-forwarded-user"], sub);
  await shot(page, "demo-6-machine-token");

  // The user's own route still gets the user's token.
  await page.click("#call-api");
  await page.waitForFunction(() => !document.querySelector("#api-result").textContent.includes("demo-machine"));
  const mine = JSON.parse(await page.textContent("#api-result"));
  assert.equal(mine.claims.sub, sub);
  assert.equal(mine.claims.client_id, "demo-spa");

  assert.doesNotMatch(await page.content(), JWT_RE);
  await watch.checkCookies(context);
  watch.checkLog(demo.log());
  assert.deepEqual(leaks, [], "no URL, response from the gateway, cookie or log line carried a token");
});
