// Signs in through the test IdP the way a browser does (redirects, the IdP's
// login and consent forms, the relying party's callback), with a cookie jar,
// and prints what the load test needs. No dependencies: Node 20's fetch.
//
//   node bench/signin.mjs gateway <base_url> <login>
//       -> {"cookie":"oidc_bff=…"}           (oidc-bff: GET /auth/login …)
//   node bench/signin.mjs peer <base_url> <login>
//       -> {"cookie":"appSession=…"}         (express-openid-connect: GET /login …)
//   node bench/signin.mjs token <issuer> <client_id> <redirect_uri> <login>
//       -> {"access_token":"…","expires_in":N}  (code flow + PKCE, public client)
//
// The form markup is the one documented in tests/idp/README.md.

import crypto from 'node:crypto';

/** Cookies by name, with their path (ports are ignored, as browsers do). */
class Jar {
  constructor() {
    this.cookies = new Map();
  }

  store(url, res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = new URL(url).pathname.replace(/\/[^/]*$/, '') || '/';
      let gone = value === '';
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path') path = v.trim();
        if (key === 'max-age' && Number(v) <= 0) gone = true;
        if (key === 'expires' && Date.parse(v) < Date.now()) gone = true;
      }
      const id = `${name}\0${path}`;
      if (gone) this.cookies.delete(id);
      else this.cookies.set(id, { name, value, path });
    }
  }

  header(url) {
    const p = new URL(url).pathname;
    return [...this.cookies.values()]
      .filter((c) => p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  get(name) {
    return [...this.cookies.values()].filter((c) => c.name === name);
  }
}

async function request(jar, url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  const cookie = jar.header(url);
  if (cookie) headers.cookie = cookie;
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.store(url, res);
  return res;
}

const FORM = /<form autocomplete="off" action="([^"]+)" method="post">/;
const PROMPT = /<input type="hidden" name="prompt" value="(login|consent)"\/>/;

/**
 * Browses from `url`: follows redirects, submits the IdP's login and consent
 * forms, and stops at the first page that is neither, or at a redirect whose
 * target starts with `stopAt` (returned, not followed).
 */
async function browse(jar, url, login, stopAt) {
  for (let hop = 0; hop < 30; hop += 1) {
    const res = await request(jar, url, { headers: { accept: 'text/html' } });
    if (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.get('location'), url).href;
      await res.arrayBuffer();
      if (stopAt && next.startsWith(stopAt)) return { stoppedAt: next };
      url = next;
      continue;
    }
    const html = await res.text();
    const form = FORM.exec(html);
    const prompt = PROMPT.exec(html);
    if (!form || !prompt) return { status: res.status, url, html };
    const body =
      prompt[1] === 'login'
        ? new URLSearchParams({ prompt: 'login', login, password: 'bench' })
        : new URLSearchParams({ prompt: 'consent' });
    const action = new URL(form[1], url).href;
    const posted = await request(jar, action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
    await posted.arrayBuffer();
    if (!(posted.status >= 300 && posted.status < 400)) {
      throw new Error(`IdP form ${prompt[1]} answered ${posted.status}`);
    }
    url = new URL(posted.headers.get('location'), action).href;
  }
  throw new Error('too many redirects');
}

async function gateway(base, login) {
  const jar = new Jar();
  const end = await browse(jar, `${base}/auth/login?return_to=/`, login);
  const [c] = jar.get('oidc_bff');
  if (!c) throw new Error(`no oidc_bff cookie after sign-in (last page: ${end.status} ${end.url})`);
  // Prove it works before handing it to wrk.
  const check = await request(jar, `${base}/auth/user`, { headers: { 'x-csrf': '1' } });
  if (check.status !== 200) throw new Error(`/auth/user answered ${check.status} with the new cookie`);
  await check.arrayBuffer();
  return { cookie: `oidc_bff=${c.value}` };
}

async function peer(base, login) {
  const jar = new Jar();
  const end = await browse(jar, `${base}/login`, login);
  const session = [...jar.cookies.values()].filter((c) => c.name.startsWith('appSession'));
  if (session.length === 0) {
    throw new Error(`no appSession cookie after sign-in (last page: ${end.status} ${end.url})`);
  }
  return { cookie: session.map((c) => `${c.name}=${c.value}`).join('; ') };
}

async function token(issuer, clientId, redirectUri, login) {
  const jar = new Jar();
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const q = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: 'openid api:read api:write',
    state: crypto.randomBytes(16).toString('base64url'),
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  const end = await browse(jar, `${issuer}/auth?${q}`, login, redirectUri);
  if (!end.stoppedAt) throw new Error(`the IdP did not redirect back (last page: ${end.status})`);
  const code = new URL(end.stoppedAt).searchParams.get('code');
  if (!code) throw new Error(`no code in ${end.stoppedAt}`);
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
    }).toString(),
  });
  const body = await res.json();
  if (!body.access_token) throw new Error(`token endpoint: ${JSON.stringify(body)}`);
  return { access_token: body.access_token, expires_in: body.expires_in };
}

const [mode, ...args] = process.argv.slice(2);
const modes = { gateway, peer, token };
if (!modes[mode]) {
  process.stderr.write('usage: signin.mjs gateway|peer|token …\n');
  process.exit(2);
}
try {
  process.stdout.write(`${JSON.stringify(await modes[mode](...args))}\n`);
} catch (err) {
  process.stderr.write(`signin ${mode}: ${err.message}\n`);
  process.exit(1);
}
