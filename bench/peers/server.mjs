// The Node BFF oidc-bff is measured against: what a Node team would build
// with the usual packages. express-openid-connect runs the authorization-code
// flow (PKCE, client secret) and keeps the session in its default store (an
// encrypted, rolling `appSession` cookie); http-proxy-middleware forwards
// /api/* to the upstream with the session's access token attached, over
// keep-alive connections. It does the same work per request as oidc-bff's
// session route: a session is required (401 otherwise), the `X-CSRF` header is
// required (403 otherwise), an expired access token is refreshed, the session
// cookie is not forwarded.
//
// Usage: node bench/peers/server.mjs '{"port":P,"issuer":"http://127.0.0.1:I",
//   "client_id":"peer","client_secret":"…","upstream":"http://127.0.0.1:U"}'
// Prints one line `{"port":P}` on stdout when listening.

import http from 'node:http';
import crypto from 'node:crypto';
import express from 'express';
import eoc from 'express-openid-connect';
import { createProxyMiddleware } from 'http-proxy-middleware';

const { auth, requiresAuth } = eoc;
const cfg = JSON.parse(process.argv[2] ?? '{}');
const port = Number(cfg.port ?? 0);
const baseURL = `http://127.0.0.1:${port}`;

const app = express();
app.disable('x-powered-by');
app.use(
  auth({
    issuerBaseURL: cfg.issuer,
    baseURL,
    clientID: cfg.client_id,
    clientSecret: cfg.client_secret,
    secret: crypto.randomBytes(32).toString('base64url'),
    authRequired: false,
    // API calls without a session get 401, not a redirect to the IdP.
    errorOnRequiredAuth: true,
    idpLogout: false,
    enableTelemetry: false,
    authorizationParams: {
      response_type: 'code',
      response_mode: 'query',
      scope: 'openid email profile offline_access',
    },
  }),
);

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 256 });

app.use(
  '/api',
  requiresAuth(),
  async (req, res, next) => {
    if (!req.get('x-csrf')) {
      res.status(403).json({ error: 'csrf' });
      return;
    }
    try {
      if (req.oidc.accessToken?.isExpired()) await req.oidc.accessToken.refresh();
      next();
    } catch (err) {
      next(err);
    }
  },
  createProxyMiddleware({
    target: `${cfg.upstream}/api`,
    agent: keepAlive,
    xfwd: true,
    on: {
      proxyReq: (proxyReq, req) => {
        proxyReq.removeHeader('cookie');
        proxyReq.setHeader('authorization', `Bearer ${req.oidc.accessToken.access_token}`);
      },
    },
  }),
);

app.use((err, req, res, _next) => {
  res.status(err.status ?? 500).json({ error: err.message });
});

const server = app.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
server.keepAliveTimeout = 65_000;
const stop = () => {
  server.close(() => process.exit(0));
  // Keep-alive connections from wrk may hold close() open: do not wait for them.
  setTimeout(() => process.exit(0), 500).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
