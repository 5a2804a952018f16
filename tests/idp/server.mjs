// Test OpenID Provider for oidc-bff integration tests.
//
// Usage: node tests/idp/server.mjs '<json config>'
// See README.md next to this file for the config, the start-up protocol and
// the /test/* hooks.
//
// stdout carries exactly one line (the ready line); everything else goes to
// stderr. oidc-provider prints some notices with console.info (stdout), so the
// console is redirected BEFORE oidc-provider is imported (dynamic import below).

import * as crypto from 'node:crypto';
import * as http from 'node:http';

const log = (...args) => console.error('[test-idp]', ...args);
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);
console.debug = (...args) => console.error(...args);

// ----------------------------------------------------------------- clock ---
// POST /test/advance-clock moves this IdP's time forward, so tests can let
// tokens and sessions expire without waiting. Everything here and in
// oidc-provider reads the time through Date.now() (its epochTime helper
// included), which is replaced before oidc-provider is imported.

let clockOffsetMs = 0;
const systemNow = Date.now.bind(Date);
Date.now = () => systemNow() + clockOffsetMs;

// ---------------------------------------------------------------- config ---

function fail(msg) {
  process.stderr.write(`[test-idp] ${msg}\n`);
  process.exit(2);
}

let config;
try {
  config = JSON.parse(process.argv[2] ?? '');
} catch (err) {
  fail(`expected one argument: a JSON config (${err.message})`);
}
if (!config || typeof config !== 'object' || !Array.isArray(config.clients) || config.clients.length === 0) {
  fail('config.clients must be a non-empty array');
}

const num = (v, dflt) => (v === undefined || v === null ? dflt : Number(v));
const PORT = num(config.port, 0);
const ACCESS_TOKEN_TTL = num(config.access_token_ttl, 3600);
const ID_TOKEN_TTL = num(config.id_token_ttl, 3600);
const REFRESH_TOKEN_TTL = num(config.refresh_token_ttl, 86400);
const CLIENT_CREDENTIALS_TTL = num(config.client_credentials_ttl, 600);
const SESSION_TTL = num(config.session_ttl, Math.max(REFRESH_TOKEN_TTL, ACCESS_TOKEN_TTL));
const ROTATE_REFRESH_TOKENS = config.rotate_refresh_tokens === undefined ? true : !!config.rotate_refresh_tokens;
// `"resource": null` switches resource indicators off: opaque access tokens
// that work at the userinfo endpoint.
const RESOURCE = config.resource === undefined ? 'urn:oidc-bff:api' : config.resource;
const RESOURCE_SCOPES = ['api:read', 'api:write'];
const WATCH_STDIN = config.watch_stdin === undefined ? true : !!config.watch_stdin;

// -------------------------------------------------------- shutdown paths ---

let server;
function shutdown(why) {
  log(`shutting down (${why})`);
  try {
    server?.closeAllConnections?.();
    server?.close();
  } catch { /* ignore */ }
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (WATCH_STDIN) {
  // A parent test process that dies closes our stdin: do not outlive it.
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.on('data', () => {});
  process.stdin.resume();
}

// ---------------------------------------------------------------- keys -----

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk, kid: crypto.randomBytes(12).toString('base64url'), alg: 'RS256', use: 'sig',
  };
}
const signingKeys = [newSigningKey()];

// -------------------------------------------------------------- adapter ----
// In-memory adapter (the built-in one is an LRU capped at 1000 entries, which
// a long test run can overflow). Same semantics, plus enumeration so the test
// hooks can find an account's grants.

const store = new Map(); // key -> { value, expiresAt (ms) | undefined }
const grantIndex = new Map(); // grantId -> Set(key)
const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

function storeGet(key) {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.expiresAt !== undefined && e.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return e.value;
}
function storeSet(key, value, expiresIn) {
  store.set(key, {
    value,
    expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined,
  });
}
setInterval(() => {
  const now = Date.now();
  for (const [k, e] of store) if (e.expiresAt !== undefined && e.expiresAt <= now) store.delete(k);
  for (const [g, keys] of grantIndex) {
    for (const k of keys) if (!store.has(k)) keys.delete(k);
    if (keys.size === 0) grantIndex.delete(g);
  }
}, 60_000).unref();

class TestAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    if (this.model === 'Session') storeSet(`sessionUid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) storeSet(`userCode:${payload.userCode}`, id, expiresIn);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
      grantIndex.get(payload.grantId).add(key);
    }
    storeSet(key, payload, expiresIn);
  }

  async find(id) { return storeGet(this.key(id)); }

  async findByUid(uid) {
    const id = storeGet(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = storeGet(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const p = storeGet(this.key(id));
    if (p) p.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    const keys = grantIndex.get(grantId);
    if (keys) for (const k of keys) store.delete(k);
    grantIndex.delete(grantId);
  }
}

// ------------------------------------------------------------- counters ----

function zeroStats() {
  return {
    // successful token responses, by grant_type (client_credentials: machine tokens)
    token: { authorization_code: 0, refresh_token: 0, client_credentials: 0 },
    token_error: { authorization_code: 0, refresh_token: 0, client_credentials: 0 }, // error responses, by grant_type
    token_requests: 0, // every POST /token
    authorization: 0, // GET /auth (not the /auth/UID resume)
    revocation: 0, // POST /token/revocation, any outcome
    introspection: 0, // POST /token/introspection, any outcome
    end_session: 0, // GET/POST /session/end, any outcome
    end_session_confirm: 0, // POST /session/end/confirm, any outcome
    end_session_success: 0, // provider event end_session.success
    backchannel_sent: 0, // logout tokens delivered (RP answered 200/204)
    backchannel_error: 0, // deliveries that failed
    userinfo: 0, // GET/POST /me, any outcome
    jwks: 0, // GET /jwks
    // How clients authenticated at the token and revocation endpoints, by
    // what they sent: an HTTP Basic header, client_secret in the form, neither.
    client_auth: { client_secret_basic: 0, client_secret_post: 0, none: 0 },
  };
}
let stats = zeroStats();
const bump = (obj, key) => { obj[key] = (obj[key] ?? 0) + 1; };

// code_challenge values of authorization requests that asked for
// offline_access (see issueRefreshToken below). Entries expire after 15 min.
const offlineChallenges = new Map();
function rememberOffline(challenge) {
  const now = Date.now();
  offlineChallenges.set(challenge, now);
  if (offlineChallenges.size > 1000) {
    for (const [c, t] of offlineChallenges) if (now - t > 15 * 60_000) offlineChallenges.delete(c);
  }
}

// ------------------------------------------------------------- accounts ----

function capitalise(s) { return s ? s[0].toUpperCase() + s.slice(1) : s; }

function accountClaims(login) {
  const claims = {
    sub: login,
    email_verified: true,
    name: capitalise(login),
    groups: login === 'alice' ? ['admins'] : [],
  };
  if (!login.startsWith('noemail')) claims.email = `${login}@example.test`;
  else delete claims.email_verified;
  return claims;
}

// ------------------------------------------------------------- provider ----

const { default: Provider, errors } = await import('oidc-provider');
// Internal module, used only by POST /test/rotate-key (oidc-provider has no
// public API for changing keys at runtime). The package has no "exports" map
// so the deep import resolves to the very module instance the provider uses.
const { default: initializeKeystore } = await import('oidc-provider/lib/helpers/initialize_keystore.js');

let provider;
let providerCallback;

server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    log('wrapper error', err);
    if (!res.headersSent) { res.statusCode = 500; res.end('internal error'); }
  });
});

function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify(body));
}

async function revokeGrantsOf(sub, alsoSessions) {
  const grantIds = [];
  for (const [key, e] of store) {
    if (key.startsWith('Grant:') && e.value?.accountId === sub) grantIds.push(key.slice('Grant:'.length));
  }
  const grantAdapter = new TestAdapter('Grant');
  for (const id of grantIds) {
    await grantAdapter.revokeByGrantId(id); // access tokens, codes, refresh tokens
    await grantAdapter.destroy(id);
  }
  let sessions = 0;
  if (alsoSessions) {
    for (const [key, e] of [...store]) {
      if (key.startsWith('Session:') && e.value?.accountId === sub) {
        store.delete(key);
        sessions += 1;
      }
    }
  }
  return { grants: grantIds.length, sessions };
}

function rotateKey() {
  const key = newSigningKey();
  signingKeys.unshift(key);
  initializeKeystore.call(provider, { keys: signingKeys });
  return { kid: key.kid, kids: signingKeys.map((k) => k.kid) };
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const path = url.pathname;
  const { method } = req;

  if (path === '/test/stats' && method === 'GET') return json(res, 200, stats);
  if (path === '/test/stats/reset' && method === 'POST') {
    stats = zeroStats();
    return json(res, 200, stats);
  }
  if (path === '/test/revoke-grants' && method === 'POST') {
    const sub = url.searchParams.get('sub');
    if (!sub) return json(res, 400, { error: 'sub query parameter required' });
    const sessions = ['1', 'true', 'yes'].includes(url.searchParams.get('sessions') ?? '');
    return json(res, 200, { sub, revoked: await revokeGrantsOf(sub, sessions) });
  }
  if (path === '/test/rotate-key' && method === 'POST') return json(res, 200, rotateKey());
  if (path === '/test/advance-clock' && method === 'POST') {
    const raw = url.searchParams.get('seconds');
    const seconds = raw === null || raw === '' ? NaN : Number(raw);
    if (!Number.isFinite(seconds) || seconds < 0) {
      return json(res, 400, { error: 'seconds query parameter required: a number >= 0' });
    }
    clockOffsetMs += Math.round(seconds * 1000);
    return json(res, 200, { offset_seconds: clockOffsetMs / 1000, now: Math.floor(Date.now() / 1000) });
  }
  if (path === '/test/health' && method === 'GET') return json(res, 200, { ok: true });
  if (path.startsWith('/test/')) return json(res, 404, { error: 'unknown test hook' });

  if (!providerCallback) { res.statusCode = 503; return res.end('starting'); }

  if (path === '/auth' && method === 'GET') {
    stats.authorization += 1;
    const scope = url.searchParams.get('scope') ?? '';
    const challenge = url.searchParams.get('code_challenge');
    if (challenge && scope.split(' ').includes('offline_access')) rememberOffline(challenge);
  } else if (path === '/token' && method === 'POST') stats.token_requests += 1;
  else if (path === '/token/revocation' && method === 'POST') stats.revocation += 1;
  else if (path === '/token/introspection' && method === 'POST') stats.introspection += 1;
  else if (path === '/session/end') stats.end_session += 1;
  else if (path === '/session/end/confirm' && method === 'POST') stats.end_session_confirm += 1;
  else if (path === '/me') stats.userinfo += 1;
  else if (path === '/jwks' && method === 'GET') stats.jwks += 1;

  return providerCallback(req, res);
}

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const clients = config.clients.map((c) => {
  const { client_id: clientId, client_secret: secret, ...rest } = c;
  if (!clientId) fail('every client needs a client_id');
  const out = {
    client_id: clientId,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: secret ? 'client_secret_basic' : 'none',
    ...rest,
  };
  if (secret) out.client_secret = secret;
  for (const k of Object.keys(out)) if (out[k] === undefined || out[k] === null) delete out[k];
  return out;
});

const resourceIndicators = RESOURCE
  ? {
    enabled: true,
    defaultResource: async () => RESOURCE,
    useGrantedResource: async () => true,
    getResourceServerInfo: async (ctx, resourceIndicator) => {
      if (resourceIndicator !== RESOURCE) throw new errors.InvalidTarget();
      return {
        scope: RESOURCE_SCOPES.join(' '),
        accessTokenFormat: 'jwt',
        audience: RESOURCE,
        accessTokenTTL: ACCESS_TOKEN_TTL,
        jwt: { sign: { alg: 'RS256' } },
      };
    },
  }
  : { enabled: false };

provider = new Provider(issuer, {
  adapter: TestAdapter,
  clients,
  jwks: { keys: signingKeys },
  cookies: {
    names: {
      session: 'idp_session',
      interaction: 'idp_interaction',
      resume: 'idp_resume',
    },
    keys: [crypto.randomBytes(32).toString('base64url')],
  },
  responseTypes: ['code'],
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: {
    acr: null,
    auth_time: null,
    iss: null,
    sid: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', ...(RESOURCE ? RESOURCE_SCOPES : [])],
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() { return accountClaims(sub); },
    };
  },
  // Issue a refresh token when the client may use the refresh_token grant and
  // the authorization request asked for offline_access. oidc-provider drops
  // offline_access from the request (and so from the code) unless
  // prompt=consent was sent, so the wrapper remembers the code_challenge of
  // such requests.
  async issueRefreshToken(ctx, client, code) {
    if (!client.grantTypeAllowed('refresh_token')) return false;
    if (code.scopes.has('offline_access')) return true;
    return !!(code.codeChallenge && offlineChallenges.has(code.codeChallenge));
  },
  rotateRefreshToken: ROTATE_REFRESH_TOKENS,
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    BackchannelAuthenticationRequest: 600,
    ClientCredentials: CLIENT_CREDENTIALS_TTL,
    DeviceCode: 600,
    Grant: Math.max(REFRESH_TOKEN_TTL, SESSION_TTL),
    IdToken: ID_TOKEN_TTL,
    Interaction: 600,
    PreAuthorizedCode: 600,
    RefreshToken: REFRESH_TOKEN_TTL,
    Session: SESSION_TTL,
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true, allowedPolicy: async () => true },
    introspection: { enabled: true, allowedPolicy: async () => true },
    backchannelLogout: { enabled: true },
    // Machine tokens (client_credentials): JWTs for the resource server, with
    // sub = client_id and no user, as Cognito's M2M tokens.
    clientCredentials: { enabled: true },
    resourceIndicators,
  },
  // Cognito's M2M access tokens say token_use "access".
  async extraTokenClaims(ctx, token) {
    return token.kind === 'ClientCredentials' ? { token_use: 'access' } : undefined;
  },
  clientBasedCORS: () => false,
  // oidc-provider refuses outgoing requests to special-use addresses
  // (127.0.0.0/8 included) through its own dispatcher; back-channel logout
  // must reach the gateway on 127.0.0.1, so drop that dispatcher.
  fetch: (target, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(target, rest);
  },
});

// Counts client_auth (see zeroStats) once oidc-provider has parsed the body.
provider.use(async (ctx, next) => {
  await next();
  if (!['token', 'revocation'].includes(ctx.oidc?.route)) return;
  const basic = /^basic /i.test(ctx.get('authorization'));
  const post = typeof ctx.oidc.body?.client_secret === 'string';
  if (basic) bump(stats.client_auth, 'client_secret_basic');
  if (post) bump(stats.client_auth, 'client_secret_post');
  if (!basic && !post) bump(stats.client_auth, 'none');
});

provider.on('grant.success', (ctx) => bump(stats.token, ctx.oidc?.params?.grant_type ?? 'unknown'));
provider.on('grant.error', (ctx, err) => {
  bump(stats.token_error, ctx.oidc?.params?.grant_type ?? 'unknown');
  log('token error:', err?.error ?? err?.message, err?.error_description ?? '', err?.error_detail ?? '');
});
provider.on('end_session.success', () => { stats.end_session_success += 1; });
provider.on('backchannel.success', (ctx, client) => {
  stats.backchannel_sent += 1;
  log('back-channel logout delivered to', client.clientId);
});
provider.on('backchannel.error', (ctx, err, client) => {
  stats.backchannel_error += 1;
  log('back-channel logout to', client?.clientId, 'failed:', err?.message, err?.cause?.message ?? '');
});
provider.on('server_error', (ctx, err) => log('server_error', ctx?.method, ctx?.path, err));
for (const ev of ['authorization.error', 'end_session.error', 'end_session_confirm.error', 'revocation.error', 'userinfo.error', 'introspection.error']) {
  provider.on(ev, (ctx, err) => log(ev, err?.error ?? err?.message, err?.error_description ?? '', err?.error_detail ?? ''));
}

// Static clients are validated lazily by oidc-provider; validate them now so
// a bad config fails at start-up (exit 2) instead of at the first request.
for (const c of clients) {
  try {
    if (!await provider.Client.find(c.client_id)) fail(`client ${c.client_id} not found`);
  } catch (err) {
    fail(`invalid client ${c.client_id}: ${err.error_description ?? err.message}`);
  }
}

providerCallback = provider.callback();

process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
log(`ready at ${issuer} (clients: ${clients.map((c) => c.client_id).join(', ')}; resource: ${RESOURCE ?? 'none'})`);
