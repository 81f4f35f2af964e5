// The SDK's libsodium calls through the module's raw exports (src/crypto.ts, issue 22's bundle size):
// every function gives what libsodium-wrappers gives for the same input (the wrappers are the
// reference here, loaded beside the SDK's own module), bad lengths are refused before a call, no
// secret stays in libsodium's heap after a call, the heap does not grow, and the browser bundle
// holds none of the wrappers' glue and stays within 300 KiB with its WebAssembly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sodium from 'libsodium-wrappers';
import * as t from '../dist/internal.js';

await t.ready();
await sodium.ready;
const s = sodium;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const utf8 = (x) => new TextEncoder().encode(x);

test('raw X-Wing: seed keypair, deterministic and random encapsulation, decapsulation equal the wrappers\'', () => {
  for (let i = 0; i < 5; i += 1) {
    const seed = t.randomBytes(32);
    const mine = t.xwingSeedKeypair(seed);
    const theirs = s.crypto_kem_xwing_seed_keypair(seed);
    assert.deepEqual(mine.publicKey, theirs.publicKey);
    assert.deepEqual(mine.privateKey, theirs.privateKey);
    const encSeed = t.randomBytes(64);
    const enc = t.xwingEncapsulateDeterministic(mine.publicKey, encSeed);
    const ref = s.crypto_kem_xwing_enc_deterministic(mine.publicKey, encSeed);
    assert.deepEqual(enc.cipherText, ref.ciphertext);
    assert.deepEqual(enc.sharedSecret, ref.sharedSecret);
    assert.deepEqual(t.xwingDecapsulate(enc.cipherText, mine.privateKey), ref.sharedSecret);
    const random = t.xwingEncapsulate(mine.publicKey);
    assert.deepEqual(s.crypto_kem_xwing_dec(random.cipherText, theirs.privateKey), random.sharedSecret);
  }
});

test('raw XChaCha20-Poly1305, pad/unpad, base64, Ed25519 verification equal the wrappers\'', () => {
  const key = t.randomBytes(32);
  const nonce = t.randomBytes(24);
  for (const length of [0, 1, 63, 64, 65, 1000]) {
    const m = t.randomBytes(length);
    const ad = t.randomBytes(length % 40);
    const sealed = t.seal(key, nonce, ad, m);
    assert.deepEqual(sealed, s.crypto_aead_xchacha20poly1305_ietf_encrypt(m, ad, null, nonce, key));
    assert.deepEqual(t.open(key, nonce, ad, sealed), m);
    sealed[length % sealed.length] ^= 1;
    assert.equal(t.open(key, nonce, ad, sealed), null);
    assert.deepEqual(t.pad(m), s.pad(m, 64));
    assert.deepEqual(t.unpad(t.pad(m)), m);
    assert.equal(s.to_base64(t.fromBase64(s.to_base64(m, s.base64_variants.ORIGINAL)), s.base64_variants.ORIGINAL), s.to_base64(m, s.base64_variants.ORIGINAL));
  }
  assert.equal(t.open(key, nonce, new Uint8Array(0), new Uint8Array(15)), null);
  assert.equal(t.unpad(new Uint8Array(64)), null);  // no 0x80 marker
  for (const bad of ['QQ', 'QQ=', 'Q===', 'QQ==QQ==', 'QQ== ', 'Q-_=', 'é===']) {
    assert.equal(t.fromBase64(bad), null, bad);
    assert.throws(() => s.from_base64(bad, s.base64_variants.ORIGINAL), undefined, bad);
  }
  assert.deepEqual(t.fromBase64(''), new Uint8Array(0));
  const signer = s.crypto_sign_seed_keypair(new Uint8Array(32).fill(3));
  const message = utf8('report data');
  const signature = s.crypto_sign_detached(message, signer.privateKey);
  assert.equal(t.ed25519Verify(signature, message, signer.publicKey), true);
  assert.equal(t.ed25519Verify(signature, utf8('report datA'), signer.publicKey), false);
  assert.equal(t.ed25519Verify(signature.subarray(1), message, signer.publicKey), false);
  assert.equal(t.ed25519Verify(signature, message, signer.publicKey.subarray(1)), false);
  assert.equal(t.equal(signature, Uint8Array.from(signature)), true);
  assert.equal(t.equal(signature, signature.subarray(1)), false);
});

test('raw calls refuse wrong key, nonce, seed and ciphertext lengths before libsodium reads them', () => {
  const { publicKey, privateKey } = t.xwingSeedKeypair(new Uint8Array(32).fill(1));
  assert.throws(() => t.seal(new Uint8Array(31), new Uint8Array(24), new Uint8Array(0), new Uint8Array(1)), /key must be 32 bytes/);
  assert.throws(() => t.seal(new Uint8Array(32), new Uint8Array(12), new Uint8Array(0), new Uint8Array(1)), /nonce must be 24 bytes/);
  assert.throws(() => t.xwingEncapsulate(publicKey.subarray(1)), /public key must be 1216 bytes/);
  assert.throws(() => t.xwingEncapsulateDeterministic(publicKey, new Uint8Array(32)), /seed must be 64 bytes/);
  assert.throws(() => t.xwingSeedKeypair(new Uint8Array(31)), /seed must be 32 bytes/);
  assert.throws(() => t.xwingDecapsulate(new Uint8Array(1119), privateKey), /ciphertext must be 1120 bytes/);
  assert.equal(t.open(new Uint8Array(16), new Uint8Array(24), new Uint8Array(0), new Uint8Array(32)), null);
});

// Where malloc's memory begins (emscripten's layout: static data, the C stack, then the heap): the
// lowest address it hands out with everything the SDK allocated freed.
const m = t.sodiumModule();
const heapStart = m._malloc(1);
m._free(heapStart);

/**
 * Whether `needle` occurs in malloc's memory, where the SDK copies arguments and outputs. (libsodium's
 * own C functions may leave intermediates on the C stack below it, as they do in a native build:
 * libsodium wipes its stack only where its code says so, the same for the C++ SDK.)
 */
function inHeap(needle) {
  const heap = m.HEAPU8;
  const first = needle[0];
  for (let i = heap.indexOf(first, heapStart - 16); i !== -1 && i <= heap.length - needle.length; i = heap.indexOf(first, i + 1)) {
    if (needle.every((b, j) => heap[i + j] === b)) return true;
  }
  return false;
}

test('no key, shared secret or plaintext stays in libsodium\'s malloc memory after a call; the heap does not grow', () => {
  const { publicKey, privateKey } = t.xwingSeedKeypair(t.randomBytes(32));
  const { cipherText, sharedSecret } = t.xwingEncapsulate(publicKey);
  assert.deepEqual(t.xwingDecapsulate(cipherText, privateKey), sharedSecret);
  const key = t.hkdf(t.randomBytes(32), sharedSecret, 'rvenc/3 request', 32);
  const nonce = t.randomBytes(24);
  const plaintext = t.randomBytes(200);
  const sealed = t.seal(key, nonce, utf8('ad'), plaintext);
  assert.deepEqual(t.open(key, nonce, utf8('ad'), sealed), plaintext);
  assert.deepEqual(t.unpad(t.pad(plaintext)), plaintext);
  for (const [name, secret] of [['X-Wing secret key', privateKey], ['shared secret', sharedSecret], ['AEAD key', key], ['plaintext', plaintext]]) {
    assert.equal(inHeap(secret), false, `${name} left in libsodium's malloc memory`);
  }
  const heap = () => t.sodiumModule().HEAPU8.length;
  const round = () => {
    const enc = t.xwingEncapsulate(publicKey);
    t.xwingDecapsulate(enc.cipherText, privateKey);
    t.open(key, nonce, utf8('ad'), t.seal(key, nonce, utf8('ad'), t.pad(plaintext)));
    t.fromBase64('QUJD'.repeat(300));
  };
  for (let i = 0; i < 100; i += 1) round();
  const before = heap();
  for (let i = 0; i < 1000; i += 1) round();  // ~8 KiB each: 8 MiB if leaked, twice the heap
  assert.equal(heap(), before);
});

test('browser bundle: no libsodium-wrappers inside; rvenc.min.js + libsodium.wasm <= 300 KiB', () => {
  const meta = JSON.parse(readFileSync(join(root, 'dist/meta/rvenc.min.js.json'), 'utf8'));
  const inputs = Object.keys(meta.inputs);
  assert.ok(inputs.some((path) => path.includes('crypto')), 'the metafile lists the SDK\'s sources');
  assert.deepEqual(inputs.filter((path) => path.includes('libsodium-wrappers')), []);
  const size = statSync(join(root, 'dist/browser/rvenc.min.js')).size + statSync(join(root, 'dist/browser/libsodium.wasm')).size;
  assert.ok(size <= 300 * 1024, `rvenc.min.js + libsodium.wasm = ${(size / 1024).toFixed(1)} KiB, more than 300 KiB`);
});
