// Every case of ../shared/vectors/ (xwing, pad, v1, v2, v3 with its negative streams, attestation)
// reproduced byte for byte with the SDK's own code, through the test-only entry point dist/internal.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as t from '../dist/internal.js';
import { ERROR_CODES } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const vectorsDir = process.env.RVENC_VECTORS_DIR ?? join(here, '..', '..', '..', '..', 'shared', 'vectors');
const load = (name) => JSON.parse(readFileSync(join(vectorsDir, `${name}.json`), 'utf8'));
const hex = (s) => t.fromHex(s);
const utf8 = (s) => new TextEncoder().encode(s);

await t.ready();

test('xwing: seed -> public key, keyId; encapsulation seed -> ciphertext, shared secret; decapsulation', async () => {
  const { cases } = load('xwing');
  assert.ok(cases.length > 0);
  for (const c of cases) {
    const { publicKey, privateKey } = t.xwingSeedKeypair(hex(c.seed));
    assert.equal(t.toHex(publicKey), c.publicKey);
    assert.equal(t.toHex(await t.keyIdOf(publicKey)), c.keyId);
    const enc = t.xwingEncapsulateDeterministic(publicKey, hex(c.encapsulationSeed));
    assert.equal(t.toHex(enc.cipherText), c.cipherText);
    assert.equal(t.toHex(enc.sharedSecret), c.sharedSecret);
    assert.equal(t.toHex(t.xwingDecapsulate(enc.cipherText, privateKey)), c.sharedSecret);
  }
});

test('pad: x || 0x80 || 0x00... to a multiple of 64, and back', () => {
  const { cases } = load('pad');
  assert.ok(cases.length > 0);
  for (const c of cases) {
    assert.equal(t.toHex(t.pad(hex(c.input))), c.padded);
    assert.equal(t.toHex(t.unpad(hex(c.padded))), c.input);
  }
  assert.equal(t.unpad(new Uint8Array(64)), null, 'all-zero block has no 0x80 marker');
  assert.equal(t.unpad(new Uint8Array(63)), null, 'not a multiple of 64');
});

// Feeds `sse` in 7-character pieces (the parser must not depend on where the stream is cut): the
// data events come out in order, and the enclave's error event is reported only once the
// authenticated done confirms it, with the error's own code.
async function decodeWhole(version, sharedSecret, c, sse) {
  const decoder = await t.ResponseDecoder.create(version, sharedSecret, hex(c.nonce), 10 * 1024 * 1024);
  const doneAt = sse.lastIndexOf('event: done');
  assert.ok(doneAt > 0);
  const chunks = [];
  for (let i = 0; i < doneAt; i += 7) chunks.push(...await decoder.feed(utf8(sse.slice(i, Math.min(i + 7, doneAt)))));
  assert.deepEqual(chunks, c.events.filter((e) => e.kind === 'data').map((e) => JSON.parse(e.plaintext)));
  const errorEvent = c.events.find((e) => e.kind === 'error');
  if (!errorEvent) {
    await decoder.feed(utf8(sse.slice(doneAt)));
    decoder.finish();
    return;
  }
  const { code: sent, message } = JSON.parse(errorEvent.plaintext).error;
  const code = ERROR_CODES.includes(sent) ? sent : 'upstream_error';  // unknown codes, as the C++ SDK
  await assert.rejects(decoder.feed(utf8(sse.slice(doneAt))), (e) => e.name === 'EnclaveError' && e.code === code && e.message === message);
}

// Checks the request body, every event, and the whole SSE stream through the decoder.
async function checkCase(version, c) {
  const { publicKey } = t.xwingSeedKeypair(hex(c.enclaveSeed));
  assert.equal(t.toHex(publicKey), c.publicKey);
  const enc = t.xwingEncapsulateDeterministic(publicKey, hex(c.encapsulationSeed));
  assert.equal(t.toHex(enc.sharedSecret), c.sharedSecret);
  assert.equal(t.toHex(enc.cipherText), c.cipherText);
  const body = await t.sealRequest({
    version, sharedSecret: enc.sharedSecret, cipherText: enc.cipherText, keyId: hex(c.keyId),
    nonce: hex(c.nonce), timestamp: c.timestamp ?? 0,
  }, utf8(c.request));
  assert.deepEqual(body, c.body);
  assert.equal(JSON.stringify(body), JSON.stringify(c.body), 'same field order as the vector');

  await decodeWhole(version, enc.sharedSecret, c, c.sse);
  return enc;
}

for (const version of [1, 2, 3]) {
  test(`v${version}: request body, every event and the whole stream`, async () => {
    const { cases } = load(`v${version}`);
    assert.ok(cases.length > 0);
    for (const c of cases) {
      const enc = await checkCase(version, c);
      if (version === 1) continue;
      const d = c.derived;
      assert.equal(t.toHex(await t.deriveRequestKey(version, enc.sharedSecret, hex(c.nonce))), d.requestKey);
      let keys;
      if (version === 2) {
        keys = await t.deriveV2ResponseKeys(enc.sharedSecret, hex(c.nonce));
      } else {
        const secret = await t.deriveResponseSecret(enc.sharedSecret, hex(c.nonce));
        assert.equal(t.toHex(secret), d.responseSecret);
        assert.equal(t.toHex(await t.hkdfExtract(hex(c.responseSalt), secret)), d.rprk);
        keys = await t.deriveV3ResponseKeys(secret, hex(c.responseSalt));
      }
      assert.equal(t.toHex(keys.key), d.responseKey);
      assert.equal(t.toHex(keys.prefix), d.responsePrefix);
      // Each event opens by itself to its plaintext (the opener's counter follows the index).
      const opener = await t.ResponseOpener.create(version, enc.sharedSecret, hex(c.nonce));
      if (version === 3) await opener.open('init', c.responseSalt);
      for (const e of c.events) {
        const plain = await opener.open(e.kind, e.payload);
        assert.equal(new TextDecoder().decode(plain), e.plaintext);
      }
      assert.ok(opener.done);
    }
  });
}

test('v3: negative streams give their error; an uppercase salt is accepted', async () => {
  const { cases } = load('v3');
  let negatives = 0;
  for (const c of cases) {
    const enc = t.xwingEncapsulateDeterministic(t.xwingSeedKeypair(hex(c.enclaveSeed)).publicKey, hex(c.encapsulationSeed));
    for (const n of c.negative) {
      negatives += 1;
      const decoder = await t.ResponseDecoder.create(3, enc.sharedSecret, hex(c.nonce), 10 * 1024 * 1024);
      await assert.rejects(async () => {
        await decoder.feed(utf8(n.sse));
        decoder.finish();
      }, (e) => e.code === n.error, `${n.name}: ${n.error}`);
    }
    await decodeWhole(3, enc.sharedSecret, c, c.uppercaseSaltAccepted);
  }
  assert.ok(negatives >= 6);
});

test('attestation: reportData = SHA-512("rvenc-attest-v1" || publicKey || challenge)', async () => {
  const { cases } = load('attestation');
  assert.ok(cases.length > 0);
  for (const c of cases) {
    assert.equal(t.toHex(await t.reportDataFor(hex(c.publicKey), hex(c.challenge))), c.reportData);
  }
});

// The project's own vectors of attestation binding 2 (docs/key-rotation.md), made with Python's
// hashlib (tests/vectors/make_attestation_v2.py): not part of ../shared.
test('attestation binding 2: reportData = SHA-512("rvenc-attest-v2" || keyId || publicKey || u64be(notAfter) || challenge)', async () => {
  const file = join(here, '..', '..', '..', 'tests', 'vectors', 'attestation_v2.json');
  const { cases } = JSON.parse(readFileSync(file, 'utf8'));
  assert.ok(cases.length >= 4);
  for (const c of cases) {
    const publicKey = hex(c.publicKey);
    assert.equal(t.toHex(await t.keyIdOf(publicKey)), c.keyId);
    assert.equal(t.toHex(await t.reportDataV2For(publicKey, c.notAfter, hex(c.challenge))), c.reportData);
    assert.equal(t.toHex(await t.reportDataFor(publicKey, hex(c.challenge))), c.reportDataV1);
    const doc = { publicKey, notAfter: c.notAfter, binding: 2 };
    assert.equal(t.toHex(await t.expectedReportData(doc, hex(c.challenge))), c.reportData);
  }
});
