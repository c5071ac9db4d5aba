// An Express API instrumented with Moesif's own Node.js middleware
// (moesif-nodejs, from the npm registry, unchanged), pointed at apimeter by
// its baseUri option. It follows the Moesif blog post the project is built
// from (the counting guide): the user is the JWT's sub, the company comes from the
// URL /accounts/{id}/..., the session token is the Authorization header.
//
// Environment:
//   PORT                    port to listen on, 127.0.0.1 only (0 = any free port)
//   MOESIF_APPLICATION_ID   an apimeter application id
//   MOESIF_BASE_URI         apimeter's base URL, e.g. http://127.0.0.1:7070
//   JWT_SECRET              HS256 secret the API checks bearer tokens with
//
// It prints one JSON line per fact on stdout for the driving test:
//   {"listening":PORT}            once the server is up
//   {"sdk":"...","err":...}       every result the SDK reports
'use strict';

const crypto = require('crypto');
const express = require('express');
const moesif = require('moesif-nodejs');

const secret = process.env.JWT_SECRET || '';

function report(fact) {
  process.stdout.write(JSON.stringify(fact) + '\n');
}

// verifyJWT returns the claims of an HS256 token signed with secret, or
// undefined. It does what express-jwt does in the blog post, without a
// dependency.
function verifyJWT(token) {
  const parts = (token || '').split('.');
  if (parts.length !== 3 || !secret) return undefined;
  const want = crypto.createHmac('sha256', secret).update(parts[0] + '.' + parts[1]).digest();
  const got = Buffer.from(parts[2], 'base64url');
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return undefined;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    if (header.alg !== 'HS256') return undefined;
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch (e) {
    return undefined;
  }
}

function bearer(req) {
  const h = req.headers['authorization'] || '';
  return h.toLowerCase().startsWith('bearer ') ? h.slice(7).trim() : undefined;
}

const moesifMiddleware = moesif({
  applicationId: process.env.MOESIF_APPLICATION_ID,
  baseUri: process.env.MOESIF_BASE_URI,
  batchSize: 50,
  batchMaxTime: 600, // ms (the SDK's least is 500): flush soon, the test waits
  retry: 0, // a failure must show, not be papered over by a retry

  identifyUser: function (req, res) {
    return req.user ? req.user.sub : undefined;
  },
  identifyCompany: function (req, res) {
    const m = req.path.match(/^\/accounts\/([^/]+)\//);
    return m ? m[1] : undefined;
  },
  getSessionToken: function (req, res) {
    return req.headers['authorization'];
  },
  getMetadata: function (req, res) {
    return { sdk: 'moesif-nodejs' };
  },
  callback: function (err, events) {
    report({
      sdk: 'events',
      count: Array.isArray(events) ? events.length : 1,
      err: err ? String(err.message || err) : null,
      status: err && err.response ? err.response.statusCode : null,
    });
  },
});

const app = express();

// Authentication, as express-jwt would: a valid bearer token sets req.user,
// an invalid one is refused, none is anonymous.
app.use(function (req, res, next) {
  const tok = bearer(req);
  if (tok === undefined) return next();
  const claims = verifyJWT(tok);
  if (!claims) return res.status(401).json({ error: 'invalid token' });
  req.user = claims;
  next();
});
app.use(moesifMiddleware);

app.get('/accounts/:id/message', function (req, res) {
  res.cookie('session', 'node-set-cookie-secret');
  res.json({ my_object: { my_message: 'Hello World!' } });
});

app.post('/accounts/:id/items', express.json(), function (req, res) {
  res.status(201).json({ created: req.body });
});

app.get('/missing', function (req, res) {
  res.status(404).json({ error: 'no such thing' });
});

const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', function () {
  report({ listening: server.address().port });

  // Profiles, once, as an app would on sign-up.
  moesifMiddleware
    .updateUser({ userId: '513', companyId: 'abcdef', metadata: { name: 'John Doe', plan: 'pro' } })
    .then(() => report({ sdk: 'updateUser', err: null }))
    .catch((err) => report({ sdk: 'updateUser', err: String(err.message || err), status: err && err.response ? err.response.statusCode : null }));
  moesifMiddleware
    .updateCompany({ companyId: 'abcdef', companyDomain: 'acme.example', metadata: { tier: 'gold' } })
    .then(() => report({ sdk: 'updateCompany', err: null }))
    .catch((err) => report({ sdk: 'updateCompany', err: String(err.message || err), status: err && err.response ? err.response.statusCode : null }));
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
