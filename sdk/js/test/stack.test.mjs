// The live tests' stack helper (stack.mjs) against a fake `rvenc` (a Node script standing in for the
// binary through RVENC_BINARY, set before stack.mjs is loaded): startUp resolves only once the
// gateway's admin /healthz counts every enclave up, not at the first stack.json saying running
// (`up --enclaves 2` says running with one enclave of two up); a start lost to a port taken between
// `up` picking it and a part binding it is tried again on new ports, any other failure is not.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const work = mkdtempSync(join(tmpdir(), 'rvenc-js-fake-'));
const fake = join(work, 'rvenc');
// FAKE_STATE: a file counting the starts. FAKE_PORT_TAKEN: starts that fail as a taken port does;
// FAKE_FAIL: every start fails otherwise; FAKE_UP_AFTER: the admin /healthz request from which
// both enclaves are up (one before).
writeFileSync(fake, `#!${process.execPath}
const { createServer } = require('node:http');
const { readFileSync, writeFileSync } = require('node:fs');
const env = process.env;
const starts = Number(readFileSync(env.FAKE_STATE, 'utf8') || 0) + 1;
writeFileSync(env.FAKE_STATE, String(starts));
if (starts <= Number(env.FAKE_PORT_TAKEN ?? 0)) {
  console.error('[proxy] rvenc proxy: cannot bind 127.0.0.1:40001: Address already in use');
  console.error('rvenc up: the proxy did not start (see its output above)');
  process.exit(3);
}
if (env.FAKE_FAIL) {
  console.error('rvenc up: --enclave-port: not a port');
  process.exit(2);
}
const data = process.argv[process.argv.indexOf('--data') + 1];
let asked = 0;
const server = createServer((req, res) => {
  const admin = req.headers.authorization === 'Bearer admin-token';
  const up = admin && ++asked >= Number(env.FAKE_UP_AFTER ?? 1) ? 2 : 1;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(admin ? { status: up === 2 ? 'ok' : 'degraded', enclavesUp: up, enclavesTotal: 2 } : { status: 'degraded' }));
});
server.listen(0, '127.0.0.1', () => {
  const gatewayUrl = 'http://127.0.0.1:' + server.address().port;
  writeFileSync(data + '/stack.json', JSON.stringify({ gatewayUrl, adminToken: 'admin-token', running: true }));
});
process.on('SIGTERM', () => process.exit(0));
`);
chmodSync(fake, 0o755);
process.env.RVENC_BINARY = fake;
const { startUp, stopUp } = await import('./stack.mjs');

after(() => rmSync(work, { recursive: true, force: true }));

/** Runs `body` with the fake's settings in the environment (its starts counted from 0). */
async function withFake(settings, body) {
  const state = join(work, `state-${Math.random().toString(16).slice(2)}`);
  writeFileSync(state, '');
  const names = ['FAKE_PORT_TAKEN', 'FAKE_FAIL', 'FAKE_UP_AFTER'];
  for (const name of names) delete process.env[name];
  Object.assign(process.env, { FAKE_STATE: state }, settings);
  try {
    await body(() => Number(readFileSync(state, 'utf8')));
  } finally {
    for (const name of [...names, 'FAKE_STATE']) delete process.env[name];
  }
}

const health = async (stack) => (await fetch(`${stack.gatewayUrl}/healthz`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json();

test('startUp: not at the first "running" but once the gateway counts every enclave up', async () => {
  await withFake({ FAKE_UP_AFTER: '4' }, async () => {
    const stack = await startUp(['--enclaves', '2']);
    try {
      const h = await health(stack);
      assert.equal(h.enclavesUp, 2, `startUp returned with ${h.enclavesUp} of ${h.enclavesTotal} enclaves up`);
    } finally {
      await stopUp(stack);
    }
  });
});

test('startUp: a start lost to a taken port is tried again; another failure is not', async () => {
  await withFake({ FAKE_PORT_TAKEN: '1' }, async (starts) => {
    const stack = await startUp();
    try {
      assert.equal(starts(), 2);
      assert.equal((await health(stack)).enclavesUp, 2);
    } finally {
      await stopUp(stack);
    }
  });
  await withFake({ FAKE_FAIL: '1' }, async (starts) => {
    await assert.rejects(startUp(), /rvenc up exited \(2\):\n.*not a port/);
    assert.equal(starts(), 1);
  });
});
