// https on the client hops, with real processes: a test CA made here with the `openssl` command,
// a real nginx terminating TLS in front of a plain `rvenc gateway` (and in front of the enclave,
// for the gateway's rvenc-mux over TLS), `rvenc proxy --gateway https://… --ca-file` driven by the
// official openai client (streaming and not), `rvenc chat` over https, and the enclave calling an
// https model server (a TLS fake engine). Negative: unknown issuer, https to a plain port, plain
// http to the TLS port, an https upstream that is not TLS: each a clear message, quickly.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { createKey, rvencBinary, startServer, stopServer } from './stack.mjs';

const kNginx = process.env.RVENC_NGINX ?? '/usr/sbin/nginx';
const kStartTimeoutMs = 30_000;
// A failure must come from TLS, not from a timeout: every client call is bounded far below this.
const kCommandTimeoutMs = 60_000;
const kTlsGreeting = 'Hello over TLS';

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

// ca.pem, and server.pem/server.key for 127.0.0.1 and localhost signed by it.
function makePki(dir) {
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=rvenc node test CA']);
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'san.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext']);
}

function freePort() {
  return new Promise((resolvePromise, reject) => {
    const server = createNetServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePromise(port));
    });
  });
}

async function waitForPort(port, what, output) {
  const deadline = Date.now() + kStartTimeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise((resolvePromise) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolvePromise(true); });
      socket.once('error', () => resolvePromise(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not listen on ${port}:\n${output()}`);
}

function portOf(url) { return Number(new URL(url).port); }

// nginx terminating TLS: gatewayPort behind `gatewayFront`, the enclave (with upgrades, for
// rvenc-mux) behind `enclaveFront`.
async function startNginx(dir, { gatewayFront, gatewayPort, enclaveFront, enclavePort }) {
  const tls = `ssl_certificate ${dir}/server.pem; ssl_certificate_key ${dir}/server.key; ` +
    'ssl_protocols TLSv1.2 TLSv1.3;';
  const proxied = 'proxy_http_version 1.1; proxy_buffering off; proxy_request_buffering off; ' +
    'proxy_read_timeout 300s;';
  writeFileSync(join(dir, 'nginx.conf'), `daemon off; master_process off; worker_processes 1;
pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-body; proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fcgi; uwsgi_temp_path ${dir}/nginx-uwsgi; scgi_temp_path ${dir}/nginx-scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:${gatewayFront} ssl; ${tls}
    location / { proxy_pass http://127.0.0.1:${gatewayPort}; ${proxied} proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${enclaveFront} ssl; ${tls}
    location / {
      proxy_pass http://127.0.0.1:${enclavePort}; ${proxied}
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;
    }
  }
}
`);
  const child = spawn(kNginx, ['-p', dir, '-e', join(dir, 'nginx-error.log'), '-c', join(dir, 'nginx.conf')],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const server = { child, output: () => output };
  await waitForPort(gatewayFront, 'nginx', server.output);
  return server;
}

// An OpenAI-compatible model server over https: a two-chunk stream, then [DONE].
function startTlsEngine(dir) {
  const server = createHttpsServer({
    cert: readFileSync(join(dir, 'server.pem')), key: readFileSync(join(dir, 'server.key')),
  }, (request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const chunk = (delta, finish) => JSON.stringify({
        id: 'chatcmpl-tls', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000),
        model: 'tls-model', choices: [{ index: 0, delta, finish_reason: finish }],
      });
      response.write(`data: ${chunk({ role: 'assistant', content: kTlsGreeting }, null)}\n\n`);
      response.write(`data: ${chunk({}, 'stop')}\n\n`);
      response.end('data: [DONE]\n\n');
    });
  });
  return new Promise((resolvePromise) => {
    server.listen(0, '127.0.0.1', () => resolvePromise({ server, port: server.address().port }));
  });
}

function chat(args, env = {}) {
  const started = Date.now();
  const result = spawnSync(rvencBinary, ['chat', ...args], {
    encoding: 'utf8', timeout: kCommandTimeoutMs, env: { ...process.env, RVENC_API_KEY: '', ...env },
  });
  return { ...result, elapsed: Date.now() - started };
}

describe('https to the gateway and from the enclave (nginx terminating TLS)', () => {
  const stack = { servers: [] };

  before(async () => {
    stack.dir = mkdtempSync(join(tmpdir(), 'rvenc-tls-'));
    const { dir } = stack;
    makePki(dir);
    stack.ca = join(dir, 'ca.pem');
    stack.engine = await startTlsEngine(dir);
    // A plain http server where the enclave is told to expect https.
    stack.plain = createHttpServer((request, response) => { request.resume(); response.end('plain'); });
    await new Promise((r) => stack.plain.listen(0, '127.0.0.1', r));
    stack.enclave = await startServer('enclave', [
      'enclave', '--listen', '127.0.0.1:0', '--attestation', 'simulated',
      '--key-file', join(dir, 'enclave.key'), '--platform-key', join(dir, 'platform.key'),
      '--demo-model', 'rvenc-demo',
      '--upstream', `tls-model=https://127.0.0.1:${stack.engine.port}/v1`,
      '--upstream', `not-tls-model=https://127.0.0.1:${stack.plain.address().port}/v1`,
      '--upstream-ca-file', stack.ca,
      '--test-models', 'rvenc-demo,tls-model,not-tls-model',
    ]);
    stack.servers.push(stack.enclave);
    stack.platformPublicKey = stack.enclave.output().match(/platform public key ([0-9a-f]{64})/)[1];
    stack.db = join(dir, 'rvenc.db');
    stack.apiKey = createKey(stack, 'tls-e2e');
    stack.gateway = await startServer('gateway', [
      'gateway', '--listen', '127.0.0.1:0', '--enclave', stack.enclave.url, '--db', stack.db,
    ]);
    stack.servers.push(stack.gateway);
    stack.gatewayFront = await freePort();
    stack.enclaveFront = await freePort();
    stack.nginx = await startNginx(dir, {
      gatewayFront: stack.gatewayFront, gatewayPort: portOf(stack.gateway.url),
      enclaveFront: stack.enclaveFront, enclavePort: portOf(stack.enclave.url),
    });
    stack.httpsGateway = `https://127.0.0.1:${stack.gatewayFront}`;
    // A second gateway that reaches the enclave through nginx's TLS: rvenc-mux over TLS.
    stack.gateway2 = await startServer('gateway2', [
      'gateway', '--listen', '127.0.0.1:0', '--enclave', `https://127.0.0.1:${stack.enclaveFront}`,
      '--enclave-ca-file', stack.ca, '--db', stack.db,
    ]);
    stack.servers.push(stack.gateway2);
    stack.proxy = await startServer('proxy', [
      'proxy', '--listen', '127.0.0.1:0', '--gateway', stack.httpsGateway, '--ca-file', stack.ca,
      '--platform-public-key', stack.platformPublicKey,
    ]);
    stack.servers.push(stack.proxy);
    stack.openai = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.proxy.url}/v1`, maxRetries: 0 });
  });

  after(async () => {
    for (const server of [...stack.servers].reverse()) await stopServer(server);
    if (stack.nginx) {
      stack.nginx.child.kill('SIGTERM');
      await new Promise((r) => { if (stack.nginx.child.exitCode !== null) r(); else stack.nginx.child.once('exit', r); });
    }
    if (stack.plain) await new Promise((r) => { stack.plain.closeAllConnections?.(); stack.plain.close(r); });
    if (stack.engine) await new Promise((r) => { stack.engine.server.closeAllConnections?.(); stack.engine.server.close(r); });
    if (stack.dir) rmSync(stack.dir, { recursive: true, force: true });
  });

  // The demo model: spawnSync blocks this process, so the TLS fake engine here could not answer.
  const clientFlags = () => ['--api-key', stack.apiKey, '--platform-public-key', stack.platformPublicKey,
    '-m', 'rvenc-demo'];

  test('the openai client through the proxy to an https gateway: complete answer', async () => {
    const completion = await stack.openai.chat.completions.create({
      model: 'rvenc-demo', messages: [{ role: 'user', content: 'Hello over https' }],
    });
    assert.match(completion.choices[0].message.content, /Hello from the rvenc demo engine/);
  });

  test('the openai client through the proxy to an https gateway: stream', async () => {
    const stream = await stack.openai.chat.completions.create({
      model: 'rvenc-demo', messages: [{ role: 'user', content: 'Stream over https' }], stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.match(text, /Hello from the rvenc demo engine/);
  });

  test('the enclave streams from an https model server verified with --upstream-ca-file', async () => {
    const stream = await stack.openai.chat.completions.create({
      model: 'tls-model', messages: [{ role: 'user', content: 'hi' }], stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, kTlsGreeting);
  });

  test('an https upstream that is not TLS fails with the reason', async () => {
    await assert.rejects(
      stack.openai.chat.completions.create({ model: 'not-tls-model', messages: [{ role: 'user', content: 'hi' }] }),
      (error) => /TLS handshake with the model server failed/.test(error.message));
  });

  test('rvenc chat over https with --ca-file, and with RVENC_CA_FILE', () => {
    const byFlag = chat(['--gateway', stack.httpsGateway, '--ca-file', stack.ca, ...clientFlags(), 'hi']);
    assert.equal(byFlag.status, 0, byFlag.stderr);
    assert.match(byFlag.stdout, /Hello from the rvenc demo engine/);
    const byEnv = chat(['--gateway', stack.httpsGateway, ...clientFlags(), 'hi'], { RVENC_CA_FILE: stack.ca });
    assert.equal(byEnv.status, 0, byEnv.stderr);
  });

  test('the gateway reaches an https enclave over rvenc-mux through TLS (--enclave-ca-file)', () => {
    const result = chat(['--gateway', stack.gateway2.url, ...clientFlags(), 'hi']);
    assert.equal(result.status, 0, `${result.stderr}\n${stack.gateway2.output()}`);
    assert.match(result.stdout, /Hello from the rvenc demo engine/);
    assert.doesNotMatch(stack.gateway2.output(), /does not take rvenc-mux/);
  });

  test('rvenc chat refuses a gateway certificate from an unknown issuer', () => {
    const result = chat(['--gateway', stack.httpsGateway, ...clientFlags(), 'hi']);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /tls_error.*unknown issuer/);
    assert.doesNotMatch(result.stdout, /Hello from/);
  });

  test('rvenc chat with https:// to a plain port says it is not TLS', () => {
    const result = chat(['--gateway', stack.gateway.url.replace('http://', 'https://'), '--ca-file', stack.ca,
      ...clientFlags(), 'hi']);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /tls_error.*not TLS/);
  });

  test('rvenc chat with http:// to the TLS port fails at once, never in clear text', () => {
    const result = chat(['--gateway', `http://127.0.0.1:${stack.gatewayFront}`, ...clientFlags(), 'hi']);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /HTTPS port|use https/);
  });
});
