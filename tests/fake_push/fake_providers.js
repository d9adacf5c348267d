// Fake push providers for pigeon's tests, on loopback:
//   APNs     HTTP/2 over TLS: POST /3/device/{token}, provider JWT (ES256) verified
//   FCM      HTTP/2 over TLS: POST /token (OAuth2 jwt-bearer, RS256 verified) and
//            POST /v1/projects/{p}/messages:send (bearer token from /token)
//   webhook  HTTP/1.1: POST /hook/{name}, HMAC signature verified
//   control  HTTP/1.1: GET /log (what was received), POST /reset
// Usage: node fake_providers.js DIR SECRET. Writes into DIR: cert.pem (self-signed
// for 127.0.0.1, for pigeond to trust), apns.p8, fcm.json (a service account
// key), and ports.json last (the test waits for it).
// Token behaviour: gone-* -> the provider's "dead token" answer; busy-* -> 429
// with Retry-After: 1 once; flaky-* -> 503 once; anything else -> accepted.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const http2 = require('http2');
const path = require('path');
const { execFileSync } = require('child_process');

const dir = process.argv[2];
const webhookSecret = process.argv[3] || 'secret';
const KEY_ID = 'KEYID12345', TEAM_ID = 'TEAM123456', TOPIC = 'org.pigeon.app';
const CLIENT_EMAIL = 'pigeon@pigeon-test.iam.gserviceaccount.com', PROJECT = 'pigeon-test';

execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
  '-keyout', path.join(dir, 'tls.key'), '-out', path.join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1',
  '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
const tls = { key: fs.readFileSync(path.join(dir, 'tls.key')), cert: fs.readFileSync(path.join(dir, 'cert.pem')) };

const apnsKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
fs.writeFileSync(path.join(dir, 'apns.p8'), apnsKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
const fcmKeys = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });

const log = { apns: [], fcm: [], tokens: [], webhook: [], errors: [] };
const seen = new Map();  // token -> requests so far
const issued = new Set();
let tokenCounter = 0;

function b64json(part) { return JSON.parse(Buffer.from(part, 'base64url').toString()); }

// Verifies a compact JWS; returns {header, claims} or throws with the reason.
function verifyJwt(jwt, alg, publicKey) {
  const parts = String(jwt).split('.');
  if (parts.length !== 3) throw new Error('not a JWT');
  const header = b64json(parts[0]), claims = b64json(parts[1]);
  if (header.alg !== alg) throw new Error('alg is ' + header.alg);
  const ok = crypto.verify('sha256', Buffer.from(parts[0] + '.' + parts[1]),
    alg === 'ES256' ? { key: publicKey, dsaEncoding: 'ieee-p1363' } : publicKey, Buffer.from(parts[2], 'base64url'));
  if (!ok) throw new Error('bad signature');
  return { header, claims };
}

function readBody(stream) {
  return new Promise((resolve) => { let b = ''; stream.on('data', (c) => b += c); stream.on('end', () => resolve(b)); });
}

function behaviour(token) {
  const n = (seen.get(token) || 0) + 1;
  seen.set(token, n);
  if (token.startsWith('gone-')) return 'gone';
  if (token.startsWith('busy-') && n === 1) return 'busy';
  if (token.startsWith('flaky-') && n === 1) return 'flaky';
  return 'ok';
}

function reply(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, Object.assign({ 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }, headers));
  res.end(text);
}

// ---- APNs ----
const apns = http2.createSecureServer(tls, async (req, res) => {
  const body = await readBody(req);
  const m = /^\/3\/device\/([^/?]+)$/.exec(req.url);
  const now = Math.floor(Date.now() / 1000);
  try {
    if (req.httpVersion !== '2.0') throw new Error('not HTTP/2');
    if (req.method !== 'POST' || !m) throw new Error('bad path ' + req.method + ' ' + req.url);
    const auth = req.headers['authorization'] || '';
    if (!auth.startsWith('bearer ')) throw new Error('no bearer provider token');
    const { header, claims } = verifyJwt(auth.slice(7), 'ES256', apnsKeys.publicKey);
    if (header.kid !== KEY_ID) throw new Error('kid is ' + header.kid);
    if (claims.iss !== TEAM_ID) throw new Error('iss is ' + claims.iss);
    if (!(claims.iat <= now + 60 && claims.iat > now - 3600)) throw new Error('iat out of range');
    if (req.headers['apns-topic'] !== TOPIC) throw new Error('apns-topic is ' + req.headers['apns-topic']);
    const type = req.headers['apns-push-type'];
    if (type !== 'alert' && type !== 'background') throw new Error('apns-push-type is ' + type);
    if (!['5', '10'].includes(req.headers['apns-priority'])) throw new Error('apns-priority');
    if (!(Number(req.headers['apns-expiration']) > now)) throw new Error('apns-expiration');
    if (!req.headers['apns-collapse-id']) throw new Error('no apns-collapse-id');
    const payload = JSON.parse(body);
    if (!payload.aps) throw new Error('no aps');
    const token = m[1];
    const b = behaviour(token);
    log.apns.push({ token, at: Date.now(), outcome: b, payload, headers: req.headers });
    if (b === 'gone') return reply(res, 410, { reason: 'Unregistered', timestamp: Date.now() });
    if (b === 'busy') return reply(res, 429, { reason: 'TooManyRequests' }, { 'retry-after': '1' });
    if (b === 'flaky') return reply(res, 503, { reason: 'ServiceUnavailable' });
    reply(res, 200, undefined, { 'apns-id': crypto.randomUUID() });
  } catch (e) {
    log.errors.push('apns: ' + e.message);
    reply(res, 403, { reason: 'InvalidProviderToken' });
  }
});

// ---- FCM (token endpoint and messages:send) ----
const fcm = http2.createSecureServer(tls, async (req, res) => {
  const body = await readBody(req);
  const now = Math.floor(Date.now() / 1000);
  try {
    if (req.url === '/token' && req.method === 'POST') {
      const form = new URLSearchParams(body);
      if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') throw new Error('grant_type');
      const { claims } = verifyJwt(form.get('assertion'), 'RS256', fcmKeys.publicKey);
      if (claims.iss !== CLIENT_EMAIL) throw new Error('iss is ' + claims.iss);
      if (!String(claims.scope).split(' ').includes('https://www.googleapis.com/auth/firebase.messaging'))
        throw new Error('scope is ' + claims.scope);
      if (claims.aud !== `https://127.0.0.1:${fcm.address().port}/token`) throw new Error('aud is ' + claims.aud);
      if (!(claims.exp > now && claims.exp <= now + 3700 && claims.iat <= now + 60)) throw new Error('exp/iat');
      const access = 'access-' + (++tokenCounter);
      issued.add(access);
      log.tokens.push({ at: Date.now(), access });
      return reply(res, 200, { access_token: access, expires_in: 3599, token_type: 'Bearer' });
    }
    const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url);
    if (req.method !== 'POST' || !m) throw new Error('bad path ' + req.url);
    if (m[1] !== PROJECT) throw new Error('project is ' + m[1]);
    const auth = req.headers['authorization'] || '';
    if (!auth.startsWith('Bearer ') || !issued.has(auth.slice(7))) {
      log.errors.push('fcm: unknown access token');
      return reply(res, 401, { error: { code: 401, status: 'UNAUTHENTICATED' } });
    }
    const msg = JSON.parse(body).message;
    if (!msg || !msg.token) throw new Error('no message.token');
    const b = behaviour(msg.token);
    log.fcm.push({ token: msg.token, at: Date.now(), outcome: b, message: msg });
    if (b === 'gone')
      return reply(res, 404, { error: { code: 404, status: 'NOT_FOUND', details: [{ errorCode: 'UNREGISTERED' }] } });
    if (b === 'busy') return reply(res, 429, { error: { code: 429, status: 'RESOURCE_EXHAUSTED' } }, { 'retry-after': '1' });
    if (b === 'flaky') return reply(res, 503, { error: { code: 503, status: 'UNAVAILABLE' } });
    reply(res, 200, { name: `projects/${PROJECT}/messages/${Date.now()}` });
  } catch (e) {
    log.errors.push('fcm: ' + e.message);
    reply(res, 400, { error: { code: 400, status: 'INVALID_ARGUMENT', message: e.message } });
  }
});

// ---- webhook ----
const webhook = http.createServer(async (req, res) => {
  const body = await readBody(req);
  try {
    const ts = req.headers['x-pigeon-timestamp'];
    const want = 'sha256=' + crypto.createHmac('sha256', webhookSecret).update(ts + '.' + body).digest('hex');
    if (req.headers['x-pigeon-signature'] !== want) throw new Error('bad signature');
    if (Math.abs(Date.now() / 1000 - Number(ts)) > 300) throw new Error('stale timestamp');
    const name = req.url.replace(/^\/hook\//, '');
    const b = behaviour('hook:' + name);
    log.webhook.push({ name, at: Date.now(), body: JSON.parse(body), headers: req.headers });
    if (name.startsWith('gone-')) return reply(res, 410, {});
    reply(res, 201, {});
  } catch (e) {
    log.errors.push('webhook: ' + e.message);
    reply(res, 400, {});
  }
});

// ---- control ----
const control = http.createServer((req, res) => {
  if (req.url === '/log') return reply(res, 200, log);
  if (req.url === '/reset' && req.method === 'POST') {
    for (const k of Object.keys(log)) log[k] = [];
    seen.clear();
    return reply(res, 200, {});
  }
  reply(res, 404, {});
});

let pending = 4;
function listening() {
  if (--pending > 0) return;
  fs.writeFileSync(path.join(dir, 'fcm.json'), JSON.stringify({
    type: 'service_account', project_id: PROJECT, private_key_id: 'fcm-key-1',
    private_key: fcmKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }), client_email: CLIENT_EMAIL,
    token_uri: `https://127.0.0.1:${fcm.address().port}/token`,
  }));
  fs.writeFileSync(path.join(dir, 'ports.json.tmp'), JSON.stringify({
    apns: apns.address().port, fcm: fcm.address().port, webhook: webhook.address().port,
    control: control.address().port, key_id: KEY_ID, team_id: TEAM_ID, topic: TOPIC,
  }));
  fs.renameSync(path.join(dir, 'ports.json.tmp'), path.join(dir, 'ports.json'));
}
for (const s of [apns, fcm, webhook, control]) s.listen(0, '127.0.0.1', listening);
// Stop by ourselves if the test forgets us.
setTimeout(() => process.exit(0), 10 * 60 * 1000).unref();
process.on('SIGTERM', () => process.exit(0));
