// Rules of the SDK that need no server: attestation verification (simulated provider, policy,
// expiry, binding), the event-stream parser and decoder's limits and error paths, option
// validation, the non-streaming assembly, HTTP error mapping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sodium from 'libsodium-wrappers';
import * as t from '../dist/internal.js';
import createRvencClient, { RvencError } from '../dist/index.js';

await t.ready();
await sodium.ready;
const s = sodium;  // the test's own signer and randomness: libsodium-wrappers, beside the SDK's raw calls
const utf8 = (x) => new TextEncoder().encode(x);

// A simulated attestation document as the enclave makes it (PROTOCOL.md section 1).
// Binding 2 (covers keyId and notAfter) unless `binding` is 1 (enclaves of older releases).
async function simulatedDocument({ challenge, platformSeed = new Uint8Array(32).fill(7), notAfter = Math.floor(Date.now() / 1000) + 3600, provider = 'simulated', binding = 2 } = {}) {
  const { publicKey } = t.xwingSeedKeypair(new Uint8Array(32).fill(1));
  const platform = s.crypto_sign_seed_keypair(platformSeed);
  const measurement = new Uint8Array(32).fill(9);
  const reportData = binding === 2 ? await t.reportDataV2For(publicKey, notAfter, challenge) : await t.reportDataFor(publicKey, challenge);
  const evidence = s.crypto_sign_detached(new Uint8Array([...reportData, ...measurement]), platform.privateKey);
  const doc = {
    keyId: t.toHex(await t.keyIdOf(publicKey)), kem: 'X-Wing', publicKey: t.toHex(publicKey), notAfter, provider,
    reportData: t.toHex(reportData), evidence: s.to_base64(evidence, s.base64_variants.ORIGINAL), measurement: t.toHex(measurement),
  };
  if (binding === 2) doc.binding = 2;
  return { doc, platformPublicKey: t.toHex(platform.publicKey) };
}

const verify = async (json, challenge, options) => t.verifyAttestation(t.parseAttestation(JSON.stringify(json)), challenge, options);
const failsWith = (pattern) => (e) => e.name === 'AttestationError' && e.code === 'attestation_failed' && pattern.test(e.message);

test('attestation: a simulated document verifies with its platform key only', async () => {
  const challenge = s.randombytes_buf(32);
  const { doc, platformPublicKey } = await simulatedDocument({ challenge });
  await verify(doc, challenge, { platformPublicKey });
  await assert.rejects(verify(doc, challenge, {}), failsWith(/not trusted without a platform public key/));
  await assert.rejects(verify(doc, challenge, { platformPublicKey: 'cd'.repeat(32) }), failsWith(/does not verify/));
  await verify(doc, challenge, { platformPublicKey, policy: { expectedMeasurement: '09'.repeat(32) } });
  await assert.rejects(verify(doc, challenge, { platformPublicKey, policy: { expectedMeasurement: '08'.repeat(32) } }), failsWith(/measurement/));
});

test('attestation binding 2: verifies; a changed notAfter, a stripped or unknown binding are refused; binding 1 only when allowed', async () => {
  const challenge = s.randombytes_buf(32);
  const { doc, platformPublicKey } = await simulatedDocument({ challenge });
  await verify(doc, challenge, { platformPublicKey });
  // The host extends the key's life: reportData (and the signature over it) no longer match.
  await assert.rejects(verify({ ...doc, notAfter: doc.notAfter + 86400 }, challenge, { platformPublicKey }), failsWith(/notAfter/));
  // The host strips the member to pass the document off as binding 1.
  const { binding, ...stripped } = doc;
  assert.equal(binding, 2);
  await assert.rejects(verify(stripped, challenge, { platformPublicKey }), failsWith(/binding 1/));
  await assert.rejects(verify(stripped, challenge, { platformPublicKey, policy: { allowBindingV1: true } }), failsWith(/reportData/));
  await assert.rejects(verify({ ...doc, binding: 3 }, challenge, { platformPublicKey }), failsWith(/"binding" must be 1 or 2/));
  // An enclave of an older release: binding 1, refused unless allowed.
  const old = await simulatedDocument({ challenge, binding: 1 });
  await assert.rejects(verify(old.doc, challenge, { platformPublicKey }), failsWith(/requires binding 2/));
  await verify(old.doc, challenge, { platformPublicKey, policy: { allowBindingV1: true } });
});

test('keys are refreshed at notAfter - min(60 s, half the life left)', () => {
  assert.equal(t.refreshTime(1000 + 86400, 1000), 1000 + 86400 - 60);
  assert.equal(t.refreshTime(1004, 1000), 1002);
  assert.equal(t.refreshTime(1000, 1000), 1000);
  assert.equal(t.refreshTime(990, 1000), 990);
});

test('attestation: another challenge, a changed key, an expired key, a changed signature are refused', async () => {
  const challenge = s.randombytes_buf(32);
  const { doc, platformPublicKey } = await simulatedDocument({ challenge });
  await assert.rejects(verify(doc, s.randombytes_buf(32), { platformPublicKey }), failsWith(/reportData/));
  await assert.rejects(verify({ ...doc, keyId: '00'.repeat(8) }, challenge, { platformPublicKey }), failsWith(/keyId/));
  const expired = await simulatedDocument({ challenge, notAfter: Math.floor(Date.now() / 1000) - 1 });
  await assert.rejects(verify(expired.doc, challenge, { platformPublicKey }), failsWith(/expired/));
  const sig = s.from_base64(doc.evidence, s.base64_variants.ORIGINAL);
  sig[0] ^= 1;
  await assert.rejects(verify({ ...doc, evidence: s.to_base64(sig, s.base64_variants.ORIGINAL) }, challenge, { platformPublicKey }), failsWith(/does not verify/));
});

test('attestation: hardware evidence that does not verify is refused naming the check (sev-snp and tdx)', async () => {
  const challenge = s.randombytes_buf(32);
  for (const provider of ['sev-snp', 'tdx']) {
    const { doc, platformPublicKey } = await simulatedDocument({ challenge, provider });
    const expected = provider === 'tdx' ? /^tdx evidence: malformed: TDX quote: / : /sev-snp evidence: malformed: the SEV-SNP report has 64 bytes/;
    await assert.rejects(verify(doc, challenge, { platformPublicKey }), failsWith(expected));
    await assert.rejects(verify(doc, challenge, { policy: { allowedProviders: ['tdx'] } }), failsWith(provider === 'tdx' ? /^tdx evidence: malformed: TDX quote: / : /not allowed/));
  }
});

test('attestation: malformed documents are attestation_failed naming the field', () => {
  for (const [text, field] of [['[]', /object/], ['{', /not JSON/], ['{"keyId":"zz"}', /keyId/],
    ['{"keyId":"0011223344556677","kem":"Kyber"}', /kem/]]) {
    assert.throws(() => t.parseAttestation(text), failsWith(field));
  }
});

test('sse: \\r\\n and \\r line ends, comments, multi-line data, unknown fields', () => {
  const p = new t.SseParser(1024);
  const out = [];
  assert.ok(p.feed(': keep-alive\r\nevent: data\r\ndata: a\r\ndata: b\r\nid: 1\r\nretry: 5\r\n\r\nevent: x\rdata: c\r\r', out));
  assert.deepEqual(out, [{ event: 'data', data: 'a\nb' }, { event: 'x', data: 'c' }]);
});

test('sse and decoder: an event larger than maxBufferSize is event_too_large', async () => {
  const decoder = await t.ResponseDecoder.create(3, new Uint8Array(32), new Uint8Array(24), 64);
  await assert.rejects(decoder.feed(utf8(`event: init\ndata: ${'a'.repeat(100)}\n\n`)), (e) => e.code === 'event_too_large' && /maxBufferSize/.test(e.message));
});

test('decoder: the gateway plain error event is upstream_error; an empty stream is truncated_stream', async () => {
  const d = await t.ResponseDecoder.create(3, new Uint8Array(32), new Uint8Array(24), 1 << 20);
  await assert.rejects(d.feed(utf8('event: error\ndata: {"error":{"type":"upstream_error","source":"gateway","message":"enclave went away"}}\n\n')),
    (e) => e.name === 'StreamError' && e.code === 'upstream_error' && /enclave went away/.test(e.message));
  const empty = await t.ResponseDecoder.create(3, new Uint8Array(32), new Uint8Array(24), 1 << 20);
  await empty.feed(utf8(': ping\n\nevent: usage\ndata: {}\n\n'));
  assert.throws(() => empty.finish(), (e) => e.code === 'truncated_stream');
});

test('options: invalid_request naming the bad option', () => {
  const bad = [
    [{}, /apiKey is required/], [{ apiKey: 'sk test' }, /whitespace/], [{ apiKey: 'k'.repeat(300) }, /too long/],
    [{ apiKey: 'sk_test_x', baseUrl: 'ftp://x' }, /baseUrl/], [{ apiKey: 'sk_test_x', baseUrl: 'not a url' }, /baseUrl/],
    [{ apiKey: 'sk_test_x', requestTimeoutMs: 0 }, /requestTimeoutMs/], [{ apiKey: 'sk_test_x', maxBufferSize: -1 }, /maxBufferSize/],
    [{ apiKey: 'sk_test_x', protocolVersion: 4 }, /protocolVersion/], [{ apiKey: 'sk_test_x', platformPublicKey: 'abc' }, /platformPublicKey/],
    [{ apiKey: 'sk_test_x', encryptionKeys: { sharedSecret: '00', cipherText: '', keyId: '' } }, /encryptionKeys/],
  ];
  for (const [options, message] of bad) {
    assert.throws(() => createRvencClient(options), (e) => e instanceof RvencError && e.code === 'invalid_request' && message.test(e.message));
  }
});

test('assembler: content and reasoning concatenated, tool_calls merged by index, last finish_reason and usage', () => {
  const a = new t.CompletionAssembler();
  const chunk = (delta, extra = {}) => ({ id: 'c1', object: 'chat.completion.chunk', created: 5, model: 'm', choices: [{ index: 0, delta, finish_reason: null, ...extra }] });
  a.add(chunk({ role: 'assistant', reasoning_content: 'think ' }));
  a.add(chunk({ reasoning_content: 'more' }));
  a.add(chunk({ content: 'Hel' }));
  a.add(chunk({ content: 'lo', tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a"' } }] }));
  a.add(chunk({ tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }, { finish_reason: 'tool_calls' }));
  a.add({ ...chunk({}), choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } });
  const c = a.completion();
  assert.equal(c.object, 'chat.completion');
  assert.equal(c.choices[0].message.content, 'Hello');
  assert.equal(c.choices[0].message.reasoning_content, 'think more');
  assert.deepEqual(c.choices[0].message.tool_calls, [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }]);
  assert.equal(c.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(c.usage, { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
});

test('HTTP errors: the code of the body, else the status; the body is never echoed', () => {
  const e = t.errorFromHttp(429, '{"error":{"message":"slow down","code":"rate_limit_exceeded"}}', { 'retry-after': '3' });
  assert.equal(e.code, 'rate_limit_exceeded');
  assert.equal(e.status, 429);
  assert.equal(e.headers['retry-after'], '3');
  const plain = t.errorFromHttp(503, '<html>secret-ish body</html>');
  assert.equal(plain.code, 'overloaded');
  assert.ok(!plain.message.includes('secret-ish'));
});

// The SDK's fast paths (issue 22): hex, HKDF and event opening run in libsodium's heap.
test('hex: strict both ways through libsodium (odd, non-hex, non-ASCII, lengths), every byte value round-trips', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(t.fromHex(t.toHex(all)), all);
  assert.deepEqual(t.fromHex(t.toHex(all).toUpperCase()), all);
  for (const bad of ['0', 'zz', '0g', 'ab ', ' ab', 'é1', '١٢', 'ab\0c']) assert.equal(t.fromHex(bad), null, JSON.stringify(bad));
  assert.equal(t.fromHex('abcd', 3), null);
  assert.deepEqual(t.fromHex('', 0), new Uint8Array(0));
  assert.equal(t.toHex(new Uint8Array(0)), '');
});

test('hkdf: libsodium\'s HKDF-SHA256 equals WebCrypto\'s, several outputs of one key', async () => {
  for (const [saltLength, ikmLength] of [[24, 32], [32, 32], [0, 17], [80, 64]]) {
    const salt = t.randomBytes(saltLength);
    const ikm = t.randomBytes(ikmLength);
    const key = await crypto.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
    const outputs = [['rvenc/3 request', 32], ['rvenc/3 response nonce', 16], ['x', 100]];
    const mine = t.hkdfMany(salt, ikm, outputs);
    for (const [i, [info, length]] of outputs.entries()) {
      const theirs = new Uint8Array(await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: utf8(info) }, key, 8 * length));
      assert.deepEqual(mine[i], theirs);
    }
  }
});

test('openPaddedHex: opens a padded event; changed, non-hex, short or unpadded input is null; the heap does not grow', () => {
  const key = t.randomBytes(32);
  const nonce = t.randomBytes(24);
  const ad = utf8('rvenc/3|data');
  const sealed = t.toHex(t.seal(key, nonce, ad, t.pad(utf8('{"a":1}'))));
  assert.equal(new TextDecoder().decode(t.openPaddedHex(key, nonce, ad, sealed)), '{"a":1}');
  const flipped = (sealed[10] === '0' ? '1' : '0');
  for (const bad of [sealed.slice(0, 10) + flipped + sealed.slice(11), sealed.slice(0, -2), `${sealed.slice(0, -1)}g`, '', 'ab',
    t.toHex(t.seal(key, nonce, ad, utf8('x'.repeat(64))))]) {  // authentic but not padded
    assert.equal(t.openPaddedHex(key, nonce, ad, bad), null);
  }
  assert.equal(t.openPaddedHex(key, nonce, utf8('rvenc/3|done'), sealed), null);
  const heap = () => t.sodiumModule().HEAPU8.length;
  for (let i = 0; i < 200; i += 1) t.openPaddedHex(key, nonce, ad, sealed);
  const before = heap();
  for (let i = 0; i < 20000; i += 1) t.openPaddedHex(key, nonce, ad, sealed);  // ~2 KiB each: 40 MiB if leaked
  assert.equal(heap(), before);
});

test('randomBytes: one WebCrypto draw per 64 KiB, any length', () => {
  const big = t.randomBytes(70000);
  assert.equal(big.length, 70000);
  assert.ok(big.subarray(65536).some((b) => b !== 0));
  assert.notDeepEqual(t.randomBytes(32), t.randomBytes(32));
});

// Stream shaping (docs/traffic-shaping.md): a version 2 stream of fixed-size records and fillers.
async function shapedStream(records) {
  const secret = s.randombytes_buf(32);
  const nonce = s.randombytes_buf(24);
  const { key, prefix } = await t.deriveV2ResponseKeys(secret, nonce);
  const events = records.map((plaintext, i) => {
    const kind = plaintext === null ? 'done' : 'data';
    const sealed = t.seal(key, t.eventNonce(prefix, i), utf8(`rvenc/2|${kind}`), t.pad(plaintext ?? utf8('[DONE]')));
    return `event: ${kind}\ndata: ${t.toHex(sealed)}\n\n`;
  });
  return { secret, nonce, events };
}
const record = (text) => {
  const bytes = utf8(text);
  const out = new Uint8Array(127);
  out.set([0x1e, bytes.length >> 8, bytes.length & 0xff]);
  out.set(bytes, 3);
  return out;
};
const filler = () => utf8('{"rvenc_filler":true}'.padEnd(127, ' '));

test('shaping: fillers are never shown, a chunk split across records is joined', async () => {
  const chunk = JSON.stringify({ choices: [{ index: 0, delta: { content: 'h\u00e9llo '.repeat(30) } }] }) + '\n';
  // Cut at whole characters, 100 at a time (at most 124 bytes: one record each), as the enclave does.
  const pieces = [];
  let rest = chunk;
  while (rest.length > 0) {
    let n = Math.min(rest.length, 100);
    pieces.push(rest.slice(0, n));
    rest = rest.slice(n);
  }
  const { secret, nonce, events } = await shapedStream([filler(), ...pieces.map(record), filler(), filler(), null]);
  const decoder = await t.ResponseDecoder.create(2, secret, nonce, 1 << 20);
  const chunks = await decoder.feed(utf8(events.join('')));
  decoder.finish();
  assert.equal(chunks.length, 1);
  assert.equal(chunks[0].choices[0].delta.content, 'h\u00e9llo '.repeat(30));
  assert.ok(pieces.length > 1);
});

test('shaping: a filler dropped is tampered_stream, a stream cut among fillers truncated_stream', async () => {
  const { secret, nonce, events } = await shapedStream([record('{"id":1}\n'), filler(), filler(), null]);
  const dropped = await t.ResponseDecoder.create(2, secret, nonce, 1 << 20);
  await assert.rejects(dropped.feed(utf8(events[0] + events[2] + events[3])), (e) => e.code === 'tampered_stream');
  const cut = await t.ResponseDecoder.create(2, secret, nonce, 1 << 20);
  assert.equal((await cut.feed(utf8(events[0] + events[1]))).length, 1);
  assert.throws(() => cut.finish(), (e) => e.code === 'truncated_stream');
  const split = await shapedStream([record('{"id":'), null]);
  const unfinished = await t.ResponseDecoder.create(2, split.secret, split.nonce, 1 << 20);
  await assert.rejects(unfinished.feed(utf8(split.events.join(''))), (e) => e.code === 'tampered_stream');
});

test('shaping: the client option adds the request member and is checked', () => {
  assert.throws(() => createRvencClient({ apiKey: 'sk_test_x', shaping: 'burst' }),
    (e) => e instanceof RvencError && e.code === 'invalid_request' && /shaping/.test(e.message));
  createRvencClient({ apiKey: 'sk_test_x', shaping: 'cadence' });
});
