// The SDK against a live stack started here (`rvenc up`, see stack.mjs): streaming and non-streaming
// answers, a bad API key, a tampered and a truncated answer (through a man-in-the-middle proxy),
// the re-attestation on unknown_key_id, cancellation, and the request bodies the gateway received
// holding no plaintext.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import createRvencClient, { generateEncryptionKeys, APIError, StreamError, AttestationError, ConnectionError } from '../dist/index.js';
import { startMitm, startUp, stopUp } from './stack.mjs';

let stack;
let mitm;
const PROMPT = 'The secret word is pineapple-7731';

before(async () => {
  stack = await startUp();
  mitm = await startMitm(stack.gatewayUrl);
});

after(async () => {
  await mitm?.close();
  await stopUp(stack);
});

const client = (options = {}) => createRvencClient({
  apiKey: stack.apiKey, baseUrl: mitm.url, platformPublicKey: stack.platformPublicKey, ...options,
});
const messages = [{ role: 'user', content: PROMPT }];

test('non-streaming: an assembled chat.completion; the gateway saw no plaintext', async () => {
  mitm.mode = 'pass';
  mitm.bodies.length = 0;
  const c = client();
  const completion = await c.chat.completions.create({ model: 'rvenc-demo', messages, max_tokens: 200 });
  assert.equal(completion.object, 'chat.completion');
  assert.equal(completion.choices[0].message.role, 'assistant');
  assert.ok(completion.choices[0].message.content.length > 0);
  assert.ok(completion.choices[0].finish_reason);
  assert.equal(c.attestation.provider, 'simulated');
  assert.match(c.attestation.keyId, /^[0-9a-f]{16}$/);
  const chat = mitm.bodies.map((b) => JSON.parse(b)).filter((b) => b.encryptedInference);
  assert.equal(chat.length, 1);
  assert.equal(chat[0].version, 3);
  for (const body of mitm.bodies) assert.ok(!body.includes('pineapple'), 'no plaintext prompt on the wire');
});

test('streaming: chunks as they come, ending after the authenticated done', async () => {
  mitm.mode = 'pass';
  const stream = await client().chat.completions.create({ model: 'rvenc-demo', messages, stream: true, max_tokens: 200 });
  let text = '';
  let chunks = 0;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    text += chunk.choices[0]?.delta?.content ?? '';
    chunks += 1;
  }
  assert.ok(chunks > 1);
  assert.ok(text.length > 0);
});

test('protocol version 2 is refused by an enclave without --allow-v2 (never downgraded)', async () => {
  await assert.rejects(client({ protocolVersion: 2 }).chat.completions.create({ model: 'rvenc-demo', messages }),
    (e) => e instanceof APIError && e.code === 'unsupported_version' && e.status === 400);
});

test('bad API key: APIError invalid_api_key, HTTP 401', async () => {
  const c = client({ apiKey: 'sk_test_not_a_real_key_000000000000' });
  await assert.rejects(c.chat.completions.create({ model: 'rvenc-demo', messages }),
    (e) => e instanceof APIError && e.code === 'invalid_api_key' && e.status === 401);
});

test('tampered answer (one hex digit flipped on the way): tampered_stream', async () => {
  mitm.mode = 'flip';
  try {
    await assert.rejects(client().chat.completions.create({ model: 'rvenc-demo', messages, max_tokens: 200 }),
      (e) => e instanceof StreamError && e.code === 'tampered_stream');
  } finally {
    mitm.mode = 'pass';
  }
});

test('truncated answer (cut before done): truncated_stream, after the chunks that did arrive', async () => {
  mitm.mode = 'truncate';
  try {
    const stream = await client().chat.completions.create({ model: 'rvenc-demo', messages, stream: true, max_tokens: 200 });
    let chunks = 0;
    await assert.rejects((async () => { for await (const _ of stream) chunks += 1; })(),
      (e) => e instanceof StreamError && e.code === 'truncated_stream');
    assert.ok(chunks > 0);
  } finally {
    mitm.mode = 'pass';
  }
});

test('unknown_key_id: the client re-attests, makes new keys and sends once more', async () => {
  const stale = { sharedSecret: '11'.repeat(32), cipherText: '22'.repeat(1120), keyId: '0123456789abcdef' };
  const c = client({ encryptionKeys: stale });
  const completion = await c.chat.completions.create({ model: 'rvenc-demo', messages, max_tokens: 200 });
  assert.ok(completion.choices[0].message.content.length > 0);
  assert.notEqual(c.encryptionKeys.keyId, stale.keyId);
});

test('keys within 60 s of their notAfter are replaced before a request, never sent', async () => {
  const nearlyExpired = { sharedSecret: '11'.repeat(32), cipherText: '22'.repeat(1120), keyId: '0123456789abcdef',
    notAfter: Math.floor(Date.now() / 1000) + 30 };
  mitm.requests.length = 0;
  const c = client({ encryptionKeys: nearlyExpired });
  const completion = await c.chat.completions.create({ model: 'rvenc-demo', messages, max_tokens: 200 });
  assert.ok(completion.choices[0].message.content.length > 0);
  // Attestation first, then exactly one chat request (with the old keys it would be refused and retried).
  assert.deepEqual(mitm.requests, ['GET /rvenc/attestation', 'POST /rvenc/chat/completions']);
  assert.notEqual(c.encryptionKeys.keyId, nearlyExpired.keyId);
});

test('generateEncryptionKeys() without an API key; keys reused by a client', async () => {
  const keys = await generateEncryptionKeys({ baseUrl: mitm.url, platformPublicKey: stack.platformPublicKey });
  assert.match(keys.keyId, /^[0-9a-f]{16}$/);
  assert.equal(keys.cipherText.length, 2240);
  const c = client({ encryptionKeys: keys });
  const completion = await c.chat.completions.create({ model: 'rvenc-demo', messages, max_tokens: 200 });
  assert.ok(completion.choices[0].message.content.length > 0);
  assert.equal(c.encryptionKeys.keyId, keys.keyId);
});

test('attestation: refused without the platform key, or with another one', async () => {
  await assert.rejects(client({ platformPublicKey: undefined }).chat.completions.create({ model: 'rvenc-demo', messages }),
    (e) => e instanceof AttestationError && e.code === 'attestation_failed' && /platform public key/.test(e.message));
  await assert.rejects(client({ platformPublicKey: 'ab'.repeat(32) }).chat.completions.create({ model: 'rvenc-demo', messages }),
    (e) => e instanceof AttestationError && /does not verify/.test(e.message));
});

test('AbortSignal cancels a streaming call: transport_error "request cancelled"', async () => {
  const controller = new AbortController();
  const stream = await client().chat.completions.create({ model: 'rvenc-demo', messages, stream: true, max_tokens: 200 },
    { signal: controller.signal });
  await assert.rejects((async () => {
    for await (const _ of stream) controller.abort();
  })(), (e) => e instanceof ConnectionError && e.code === 'transport_error' && /cancelled/.test(e.message));
});

test('models(): the gateway list', async () => {
  const list = await client().models();
  assert.ok(list.data.some((m) => m.id === 'rvenc-demo'));
});
