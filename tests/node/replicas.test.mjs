// Several enclaves behind one gateway (issue 28, PROTOCOL.md section 7), driven through `rvenc
// proxy` by the official `openai` npm client: two replicas of model-a and one enclave of model-b,
// demo engine with a per-token delay. Assertions are on outcomes (counts, codes), never on speed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import OpenAI, { APIError } from 'openai';

import { createKey, startServer, stopServer } from './stack.mjs';

const kMessages = [{ role: 'user', content: 'Say hello to the replicas' }];
// Long enough that 80 streams of ~90 tokens overlap on a loaded machine (outcomes, not speed).
const kTokenDelayMs = 50;

function enclaveArgs(dir, name, model, extra = []) {
  return ['enclave', '--listen', '127.0.0.1:0', '--attestation', 'simulated', '--key-file', join(dir, `${name}.key`),
    '--platform-key', join(dir, 'platform.key'), '--demo-model', model, '--demo-delay-ms', String(kTokenDelayMs),
    ...extra];
}

// One gateway over `enclaves`, and a proxy in front of it; the servers go to `stack.servers`.
async function gatewayAndProxy(stack, enclaves) {
  const gateway = await startServer('gateway', ['gateway', '--listen', '127.0.0.1:0', '--db', stack.db,
    ...enclaves.flatMap((e) => ['--enclave', e.url])]);
  stack.servers.push(gateway);
  const proxy = await startServer('proxy', ['proxy', '--listen', '127.0.0.1:0', '--gateway', gateway.url,
    '--platform-public-key', stack.platformPublicKey, '--dek-store', join(stack.dir, `deks-${stack.servers.length}.json`)]);
  stack.servers.push(proxy);
  const client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${proxy.url}/v1`, maxRetries: 0, timeout: 60_000 });
  return { gateway, proxy, client };
}

async function startEnclaves(stack, specs) {
  const [first, ...rest] = specs;  // the first makes the platform key the others load
  const started = [await startServer(first.name, enclaveArgs(stack.dir, first.name, first.model, first.extra))];
  started.push(...await Promise.all(rest.map((s) => startServer(s.name, enclaveArgs(stack.dir, s.name, s.model, s.extra)))));
  stack.servers.push(...started);
  const platform = started[0].output().match(/platform public key ([0-9a-f]{64})/);
  if (!platform) throw new Error(`no platform public key:\n${started[0].output()}`);
  stack.platformPublicKey = platform[1];
  return started;
}

// rvenc_gateway_enclave_requests_total{enclave="URL"} per enclave URL.
async function enclaveRequests(gatewayUrl) {
  const text = await (await fetch(`${gatewayUrl}/metrics`)).text();
  const counts = {};
  for (const match of text.matchAll(/^rvenc_gateway_enclave_requests_total\{enclave="([^"]+)"\} (\d+)/gm))
    counts[match[1]] = Number(match[2]);
  return counts;
}

// Stops the servers, last started first (one killed by a test has already exited).
async function stopAll(stack) {
  for (const server of [...stack.servers].reverse())
    if (server.child.exitCode === null && server.child.signalCode === null) await stopServer(server);
  rmSync(stack.dir, { recursive: true, force: true });
}

// A streaming completion: its text (content and reasoning), or the error it ended with;
// first/last chunk times.
async function stream(client, model, maxTokens) {
  const result = { text: '', error: null, first: null, last: null };
  try {
    const answer = await client.chat.completions.create({ model, messages: kMessages, stream: true, max_tokens: maxTokens });
    for await (const chunk of answer) {
      result.first ??= performance.now();
      const delta = chunk.choices[0]?.delta ?? {};
      result.text += (delta.content ?? '') + (delta.reasoning_content ?? '');
    }
    result.last = performance.now();
  } catch (error) {
    result.error = error;
  }
  return result;
}

describe('several enclaves behind one gateway, through the proxy', () => {
  const stack = { dir: mkdtempSync(join(tmpdir(), 'rvenc-replicas-')), servers: [] };
  let a1; let a2; let gateway; let client;

  before(async () => {
    stack.db = join(stack.dir, 'rvenc.db');
    stack.apiKey = createKey(stack, 'replicas');
    [a1, a2] = await startEnclaves(stack, [
      { name: 'a1', model: 'model-a', extra: ['--max-streams', '40'] },
      { name: 'a2', model: 'model-a', extra: ['--max-streams', '40'] },
      { name: 'b', model: 'model-b' },
    ]);
    ({ gateway, client } = await gatewayAndProxy(stack, stack.servers.slice(0, 3)));
  });
  after(() => stopAll(stack));

  test('models.list shows every model', async () => {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    assert.ok(ids.includes('model-a') && ids.includes('model-b'), `models: ${ids}`);
  });

  test('the model on one enclave answers', async () => {
    const result = await stream(client, 'model-b', 8);
    assert.equal(result.error, null, String(result.error));
    assert.ok(result.text.length > 0);
  });

  test('64 concurrent streams on one API key split between the two replicas', async () => {
    const before = await enclaveRequests(gateway.url);
    const results = await Promise.all(Array.from({ length: 64 }, () => stream(client, 'model-a', 16)));
    for (const r of results) assert.equal(r.error, null, String(r.error));
    const now = await enclaveRequests(gateway.url);
    const served = [a1, a2].map((e) => (now[e.url] ?? 0) - (before[e.url] ?? 0));
    assert.equal(served[0] + served[1], 64, `per replica: ${served} (metrics ${JSON.stringify(now)})`);
    assert.ok(Math.min(...served) >= 64 * 0.35, `split ${served[0]}/${served[1]} is worse than 35/65`);
  });

  test('every replica full: 503 enclave_busy with Retry-After', async () => {
    const long = Array.from({ length: 80 }, () => stream(client, 'model-a', 200));  // 2 x --max-streams 40
    // Once all 80 are streaming the replicas are full (polled, not timed).
    const busy = await (async () => {
      for (let i = 0; i < 600; i += 1) {
        const attempt = await stream(client, 'model-a', 1);
        if (attempt.error) return attempt.error;
        await new Promise((r) => setTimeout(r, 50));
      }
      return null;
    })();
    const results = await Promise.all(long);
    assert.ok(busy instanceof APIError, `no request was refused: ${busy}`);
    assert.equal(busy.status, 503);
    assert.equal(busy.code, 'enclave_busy', busy.message);
    assert.ok(Number(busy.headers.get('retry-after')) > 0, 'Retry-After');
    for (const r of results) assert.equal(r.error, null, String(r.error));
  });

  test('kill -9 of one replica under load: new requests move to the other', async () => {
    const load = Array.from({ length: 32 }, () => stream(client, 'model-a', 100));
    await new Promise((r) => setTimeout(r, 300));
    a1.child.kill('SIGKILL');
    await new Promise((r) => a1.child.exitCode !== null || a1.child.signalCode !== null ? r() : a1.child.once('exit', r));
    const late = await Promise.all(Array.from({ length: 16 }, () => stream(client, 'model-a', 8)));
    for (const r of late) assert.equal(r.error, null, `a request started after the kill failed: ${r.error}`);
    for (const r of await Promise.all(load)) {
      if (r.error) assert.ok(r.error.message.length > 0, 'a cut stream ends with a clear error');
    }
  });
});

describe('two gateways in front of one enclave with --max-streams 8', () => {
  const stack = { dir: mkdtempSync(join(tmpdir(), 'rvenc-capacity-')), servers: [] };
  let clients;

  before(async () => {
    stack.db = join(stack.dir, 'rvenc.db');
    stack.apiKey = createKey(stack, 'capacity');
    const [enclave] = await startEnclaves(stack, [{ name: 'c', model: 'model-c', extra: ['--max-streams', '8'] }]);
    clients = [(await gatewayAndProxy(stack, [enclave])).client, (await gatewayAndProxy(stack, [enclave])).client];
  });
  after(() => stopAll(stack));

  test('never more than 8 streams run on it at once', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => stream(clients[i % 2], 'model-c', 60)));
    const served = results.filter((r) => !r.error);
    assert.ok(served.length > 0);
    for (const r of results.filter((x) => x.error)) assert.equal(r.error.code, 'enclave_busy', String(r.error));
    // What each client saw (first to last chunk) lies within the enclave's own stream: streams
    // seen overlapping ran together there, so this count can only understate the enclave's.
    const edges = served.flatMap((r) => [[r.first, 1], [r.last, -1]]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let running = 0; let most = 0;
    for (const [, step] of edges) { running += step; most = Math.max(most, running); }
    assert.ok(most <= 8, `${most} streams ran at once on an enclave with --max-streams 8`);
  });
});
