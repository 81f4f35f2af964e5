// Several enclaves (PROTOCOL.md section 7) against a fake gateway (node:http) serving simulated
// replica documents: attestation asked per model with all=1, every document verified (a tampered
// one left out), requests spread by this client's own in-flight count, one re-send sealed anew to
// the other replica on enclave_busy / unknown_key_id / enclave_unavailable / a connection reset,
// concurrent failures sharing one re-attestation, nothing re-sent after init, and an older gateway
// answering a single document.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import sodium from 'libsodium-wrappers';
import * as t from '../dist/internal.js';
import createRvencClient, { generateEncryptionKeys } from '../dist/index.js';

await t.ready();
await sodium.ready;
const s = sodium;  // the test's own signer and randomness: libsodium-wrappers, beside the SDK's raw calls
const MODEL = 'model-a';
const platform = s.crypto_sign_seed_keypair(new Uint8Array(32).fill(7));
const platformPublicKey = t.toHex(platform.publicKey);
const measurement = new Uint8Array(32).fill(9);

// Replica i's X-Wing key (seeded), and its simulated document for a challenge.
const replicas = await Promise.all([1, 2, 3].map(async (seed) => {
  const { publicKey } = t.xwingSeedKeypair(new Uint8Array(32).fill(seed));
  return { publicKey, keyId: t.toHex(await t.keyIdOf(publicKey)) };
}));
async function documentOf(replica, challenge, { tamper = false, models = [MODEL] } = {}) {
  const notAfter = Math.floor(Date.now() / 1000) + 3600;
  const reportData = await t.reportDataV2For(replica.publicKey, notAfter, challenge);
  const evidence = s.crypto_sign_detached(new Uint8Array([...reportData, ...measurement]), platform.privateKey);
  if (tamper) evidence[0] ^= 1;
  return {
    keyId: replica.keyId, kem: 'X-Wing', publicKey: t.toHex(replica.publicKey), notAfter, binding: 2,
    provider: 'simulated', reportData: t.toHex(reportData), evidence: s.to_base64(evidence, s.base64_variants.ORIGINAL),
    measurement: t.toHex(measurement), models, capacity: null, previousKeys: [],
  };
}

// The fake gateway. `gw.replicas` lists the replicas it attests (`tampered`: their evidence is
// flipped); `gw.single` answers one document as older gateways do (and any gateway without all=1); `gw.onChat(body, n)` picks what
// the n-th chat request gets: 'hold' (200 event stream left open), 'init-cut' (200, an init event,
// then the connection cut), 'reset' (the connection cut before any status) or an error code;
// `gw.answerWhen(body, n)` gives a condition the answer waits for (none by default).
const gw = {
  replicas: [], tampered: new Set(), single: false, attestDelayMs: 0,
  attestations: [], chats: [], open: new Set(), onChat: () => 'hold', answerWhen: () => () => true,
  reset() {
    this.replicas = [replicas[0], replicas[1]];
    this.tampered = new Set();
    this.single = false;
    this.attestDelayMs = 0;
    this.attestations = [];
    this.chats = [];
    this.onChat = () => 'hold';
    this.answerWhen = () => () => true;
  },
};
const STATUS = { enclave_busy: 503, enclave_unavailable: 503, unknown_key_id: 400 };
let server;
let baseUrl;

before(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'GET' && url.pathname === '/rvenc/attestation') {
      gw.attestations.push(Object.fromEntries(url.searchParams));
      const challenge = t.fromHex(url.searchParams.get('challenge'), 32);
      setTimeout(async () => {
        const docs = await Promise.all(gw.replicas.map((r) => documentOf(r, challenge, { tamper: gw.tampered.has(r.keyId) })));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(gw.single || url.searchParams.get('all') !== '1' ? docs[0] : { enclaves: docs }));
      }, gw.attestDelayMs);
      return;
    }
    if (req.method === 'POST' && url.pathname === '/rvenc/chat/completions') {
      let text = '';
      req.on('data', (d) => { text += d; });
      req.on('end', () => {
        const body = JSON.parse(text);
        gw.chats.push(body);
        const n = gw.chats.length - 1;
        const action = gw.onChat(body, n);
        answerOnce(gw.answerWhen(body, n), () => answer(req, res, action));
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

// Calls `then` once `ready()` holds (checked every 5 ms), or after 30 s without (the test then fails
// on what it asserts, never hangs).
function answerOnce(ready, then, deadline = Date.now() + 30_000) {
  if (ready() || Date.now() > deadline) then();
  else setTimeout(() => answerOnce(ready, then, deadline), 5);
}

// The fake gateway's answer to a chat request (see gw.onChat).
function answer(req, res, action) {
  if (action === 'reset') {
    req.socket.destroy();
  } else if (action === 'hold' || action === 'init-cut') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    gw.open.add(res);
    res.on('close', () => gw.open.delete(res));
    if (action === 'init-cut') {
      res.write(`event: init\ndata: ${'ab'.repeat(40)}\n\n`, () => setTimeout(() => req.socket.destroy(), 20));
    }
  } else {
    res.writeHead(STATUS[action] ?? 503, { 'content-type': 'application/json', 'retry-after': '1' });
    res.end(JSON.stringify({ error: { code: action, message: `fake ${action}` } }));
  }
}

after(async () => {
  for (const res of gw.open) res.destroy();
  server.closeAllConnections?.();
  await new Promise((r) => server.close(r));
});

const client = () => createRvencClient({ apiKey: 'sk-test', baseUrl, platformPublicKey, requestTimeoutMs: 5000 });
const ask = (c) => c.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true });
// Ends a held stream: the gateway closes it, the SDK's iteration fails and releases its replica.
async function finish(stream) {
  for (const res of gw.open) res.destroy();
  await assert.rejects((async () => { for await (const chunk of stream) void chunk; })());
}

test('attestation is asked per model with all=1, every document verified; keys per replica', async () => {
  gw.reset();
  const c = client();
  await finish(await ask(c));
  assert.equal(gw.attestations.length, 1);
  const q = gw.attestations[0];
  assert.equal(q.model, MODEL);
  assert.equal(q.all, '1');
  assert.match(q.challenge, /^[0-9a-f]{64}$/);
  assert.deepEqual(c.replicaKeys(MODEL).map((k) => k.keyId).sort(), [replicas[0].keyId, replicas[1].keyId].sort());
});

test('a tampered document is refused and never used; all tampered: attestation_failed, nothing sent', async () => {
  gw.reset();
  gw.tampered.add(replicas[1].keyId);
  const c = client();
  const streams = [];
  for (let i = 0; i < 4; i += 1) streams.push(await ask(c));
  assert.deepEqual(gw.chats.map((b) => b.keyId), Array(4).fill(replicas[0].keyId));
  assert.deepEqual(c.replicaKeys(MODEL).map((k) => k.keyId), [replicas[0].keyId]);
  for (const stream of streams) await finish(stream);

  gw.reset();
  gw.tampered = new Set([replicas[0].keyId, replicas[1].keyId]);
  await assert.rejects(ask(client()), (e) => e.code === 'attestation_failed' && /does not verify/.test(e.message));
  assert.equal(gw.chats.length, 0);
});

test('requests spread across two replicas by this client\'s own requests in flight', async () => {
  gw.reset();
  const c = client();
  const streams = [];
  for (let i = 0; i < 6; i += 1) streams.push(await ask(c));
  const count = (id) => gw.chats.filter((b) => b.keyId === id).length;
  assert.equal(count(replicas[0].keyId), 3);
  assert.equal(count(replicas[1].keyId), 3);
  assert.equal(gw.attestations.length, 1, 'keys are attested once and cached');
  for (const stream of streams) await finish(stream);
  // Released: the next two go one to each replica again.
  const more = [await ask(c), await ask(c)];
  assert.notEqual(gw.chats[6].keyId, gw.chats[7].keyId);
  for (const stream of more) await finish(stream);
});

test('a stream that is over releases its replica: the next request takes the one left idle', async () => {
  gw.reset();
  const c = client();
  let held = await ask(c);
  for (let i = 1; i <= 10; i += 1) {
    const heldAnswer = [...gw.open];
    const next = await ask(c);  // `held` is in flight: the other replica
    assert.notEqual(gw.chats[i].keyId, gw.chats[i - 1].keyId, `request ${i} went to the replica in use`);
    for (const res of heldAnswer) res.destroy();  // `held` is over (failed): its replica is idle again
    await assert.rejects((async () => { for await (const chunk of held) void chunk; })());
    held = next;
  }
  await finish(held);
});

for (const code of ['enclave_busy', 'unknown_key_id', 'enclave_unavailable', 'reset']) {
  test(`${code}: one re-attestation and one re-send, sealed anew, to the other replica`, async () => {
    gw.reset();
    gw.onChat = (_body, n) => (n === 0 ? code : 'hold');
    const c = client();
    const stream = await ask(c);
    assert.equal(gw.chats.length, 2);
    assert.notEqual(gw.chats[1].keyId, gw.chats[0].keyId, 'the re-send goes to the other replica');
    assert.notEqual(gw.chats[1].nonce, gw.chats[0].nonce, 'sealed anew');
    assert.notEqual(gw.chats[1].encryptedInference, gw.chats[0].encryptedInference);
    assert.equal(gw.attestations.length, 2, 'the model was attested again');
    await finish(stream);
  });
}

test('a second failure is not re-sent again: the caller gets the error', async () => {
  gw.reset();
  gw.onChat = () => 'enclave_busy';
  await assert.rejects(ask(client()), (e) => e.code === 'enclave_busy' && e.status === 503);
  assert.equal(gw.chats.length, 2);
});

test('nothing is re-sent after init: a stream cut after its first event is an error', async () => {
  gw.reset();
  gw.onChat = () => 'init-cut';
  const c = client();
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(gw.chats.length, 1);
  assert.equal(gw.attestations.length, 1);
});

test('concurrent failures share one re-attestation', async () => {
  gw.reset();
  const c = client();
  await finish(await ask(c));  // keys made
  gw.attestDelayMs = 100;
  gw.onChat = (_body, n) => (n >= 1 && n <= 4 ? 'enclave_unavailable' : 'hold');
  const streams = await Promise.all([ask(c), ask(c), ask(c), ask(c)]);
  assert.equal(gw.chats.length, 9);
  assert.equal(gw.attestations.length, 2, 'one re-attestation for the four failures');
  for (const stream of streams) await finish(stream);
});

test('a failure answered after the re-attestation it caused keeps the keys made there: still one re-attestation', async () => {
  gw.reset();
  const c = client();
  await finish(await ask(c));  // keys made
  // Four requests, two on each replica, all enclave_unavailable: the first on each at once (both
  // replicas dropped, one re-attestation), the second on each only once the client holds the new
  // keys. Those late failures are on keys the re-attestation replaced: they must not drop its keys.
  const perReplica = new Map();
  const allIn = () => gw.chats.length >= 5;
  const reattested = () => gw.attestations.length === 2 && c.replicaKeys(MODEL).length === 2;
  gw.onChat = (_body, n) => (n >= 1 && n <= 4 ? 'enclave_unavailable' : 'hold');
  gw.answerWhen = (body, n) => {
    if (n < 1 || n > 4) return () => true;
    perReplica.set(body.keyId, (perReplica.get(body.keyId) ?? 0) + 1);
    return perReplica.get(body.keyId) === 1 ? allIn : reattested;
  };
  const streams = await Promise.all([ask(c), ask(c), ask(c), ask(c)]);
  assert.deepEqual([...perReplica.values()], [2, 2]);
  assert.equal(gw.chats.length, 9);
  assert.equal(gw.attestations.length, 2, 'one re-attestation for the four failures');
  assert.equal(c.replicaKeys(MODEL).length, 2, 'both replicas still held');
  for (const stream of streams) await finish(stream);
});

test('an older gateway answering one document still works (one replica)', async () => {
  gw.reset();
  gw.single = true;
  const c = client();
  const stream = await ask(c);
  assert.equal(gw.chats[0].keyId, replicas[0].keyId);
  assert.deepEqual(c.replicaKeys(MODEL).map((k) => k.keyId), [replicas[0].keyId]);
  await finish(stream);
  gw.onChat = (_body, n) => (n === 1 ? 'unknown_key_id' : 'hold');
  const again = await ask(c);
  assert.equal(gw.chats.length, 3);
  assert.equal(gw.chats[2].keyId, replicas[0].keyId);
  await finish(again);
});

test('generateEncryptionKeys keeps its shape; with a model it attests that model (one document)', async () => {
  gw.reset();
  const keys = await generateEncryptionKeys({ baseUrl, platformPublicKey, model: MODEL });
  assert.match(keys.sharedSecret, /^[0-9a-f]{64}$/);
  assert.match(keys.cipherText, /^[0-9a-f]{2240}$/);
  assert.ok([replicas[0].keyId, replicas[1].keyId].includes(keys.keyId));
  assert.deepEqual(keys.models, [MODEL]);
  assert.equal(gw.attestations[0].model, MODEL);
  assert.equal(gw.attestations[0].all, undefined);
  // Keys given to a client serve its requests for that model without attestation.
  const c = createRvencClient({ apiKey: 'sk-test', baseUrl, platformPublicKey, encryptionKeys: keys });
  const stream = await ask(c);
  assert.equal(gw.chats[0].keyId, keys.keyId);
  assert.equal(gw.attestations.length, 1);
  await finish(stream);
});
