// The C++ side of the browser path, on real processes: the gateway's CORS answers (`--cors-origin`,
// passed by `rvenc up` for the proxy's origin) and the proxy's /chat route, including the clear 404
// when the page was not built.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rvencBinary, startUp, stopUp } from './stack.mjs';

let stack;
before(async () => { stack = await startUp(); });
after(async () => { await stopUp(stack); });

const preflight = (origin, path = '/rvenc/chat/completions') => fetch(`${stack.gatewayUrl}${path}`, {
  method: 'OPTIONS',
  headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
});

test('gateway: a preflight from the proxy origin is allowed for the chat, models and attestation routes', async () => {
  for (const path of ['/rvenc/chat/completions', '/rvenc/models', '/rvenc/attestation']) {
    const r = await preflight(stack.proxyUrl, path);
    assert.equal(r.status, 204, path);
    assert.equal(r.headers.get('access-control-allow-origin'), stack.proxyUrl);
    assert.match(r.headers.get('access-control-allow-methods'), /POST/);
    assert.match(r.headers.get('access-control-allow-headers'), /authorization/);
    assert.equal(r.headers.get('access-control-allow-credentials'), null);
  }
});

test('gateway: a preflight from another origin is 403 with an OpenAI error and no allow header', async () => {
  const r = await preflight('http://evil.example:3000');
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('access-control-allow-origin'), null);
  const body = await r.json();
  assert.match(body.error.message, /origin is not allowed/);
});

test('gateway: answers to the allowed origin carry Access-Control-Allow-Origin, errors and streams included', async () => {
  const models = await fetch(`${stack.gatewayUrl}/rvenc/models`, { headers: { origin: stack.proxyUrl, authorization: `Bearer ${stack.apiKey}` } });
  assert.equal(models.status, 200);
  assert.equal(models.headers.get('access-control-allow-origin'), stack.proxyUrl);
  assert.match(models.headers.get('access-control-expose-headers'), /retry-after/);
  const refused = await fetch(`${stack.gatewayUrl}/rvenc/chat/completions`, {
    method: 'POST', headers: { origin: stack.proxyUrl, authorization: 'Bearer sk_test_nope', 'content-type': 'application/json' }, body: '{}',
  });
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get('access-control-allow-origin'), stack.proxyUrl);
  const other = await fetch(`${stack.gatewayUrl}/rvenc/models`, { headers: { origin: 'http://evil.example', authorization: `Bearer ${stack.apiKey}` } });
  assert.equal(other.headers.get('access-control-allow-origin'), null);
  const health = await fetch(`${stack.gatewayUrl}/healthz`, { headers: { origin: stack.proxyUrl } });
  assert.equal(health.headers.get('access-control-allow-origin'), null, 'only the browser routes are open');
});

test('proxy: /chat serves the built page with a strict Content-Security-Policy; config.json holds no secret', async () => {
  const page = await fetch(`${stack.proxyUrl}/chat`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /text\/html/);
  const csp = page.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.ok(csp.includes(`connect-src 'self' ${stack.gatewayUrl}`));
  assert.match(await page.text(), /rvenc chat/);
  const script = await fetch(`${stack.proxyUrl}/chat/chat.js`);
  assert.match(script.headers.get('content-type'), /javascript/);
  // libsodium's WebAssembly and the lazily imported hardware verifier, next to chat.js (scripts/bundle.mjs).
  const wasm = await fetch(`${stack.proxyUrl}/chat/libsodium.wasm`);
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  assert.ok(WebAssembly.validate(new Uint8Array(await wasm.arrayBuffer())));
  const hardware = await fetch(`${stack.proxyUrl}/chat/hardware.js`);
  assert.equal(hardware.status, 200);
  assert.match(hardware.headers.get('content-type'), /javascript/);
  const config = await (await fetch(`${stack.proxyUrl}/chat/config.json`)).json();
  assert.deepEqual(Object.keys(config).sort(), ['gatewayUrl', 'measurement', 'platformPublicKey', 'protocolVersion']);
  assert.equal(config.gatewayUrl, stack.gatewayUrl);
  assert.equal(config.platformPublicKey, stack.platformPublicKey);
  assert.equal((await fetch(`${stack.proxyUrl}/chat/../stack.json`)).status, 404);
  assert.equal((await fetch(`${stack.proxyUrl}/chat/package.json`)).status, 404);
});

test('proxy: /chat without a built page is a 404 naming the build command', async () => {
  const child = spawn(rvencBinary, ['proxy', '--listen', '127.0.0.1:0', '--gateway', stack.gatewayUrl, '--chat-dir', '/nonexistent/rvenc-chat'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let out = '';
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`proxy did not start:\n${out}`)), 30_000);
      child.stdout.on('data', (d) => {
        out += d;
        const m = out.match(/listening on (http:\/\/\S+)/);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
    });
    const r = await fetch(`${url}/chat`);
    assert.equal(r.status, 404);
    const body = await r.json();
    assert.equal(body.error.code, 'not_found');
    assert.match(body.error.message, /chat page not built: run `npm ci && npm run build` in sdk\/js/);
  } finally {
    child.kill('SIGTERM');
  }
});
