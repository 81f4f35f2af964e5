// The SDK's cryptography, all from libsodium's own JS build (the `libsodium` npm package: the
// emscripten module that libsodium-wrappers also loads, the same library as the C++ SDK) and
// WebCrypto: X-Wing (crypto_kem_xwing_*), XChaCha20-Poly1305 IETF, pad/unpad, Ed25519
// verification, HKDF-SHA256 (crypto_kdf_hkdf_sha256_*), hex/base64 (sodium_*); SHA-256/512 and
// randomness from WebCrypto. Nothing here is hand-written cryptography.
//
// Design: the SDK calls the module's raw exports (`_crypto_…` on its heap) as the C++ SDK calls the
// C functions, not the wrappers' API: the wrappers' glue is 119 KiB of JavaScript that would be
// most of the browser bundle (sdk/js/README.md, "libsodium without the wrappers"). Each call is one
// heap allocation (`withHeap`): arguments copied in, outputs copied out, every return code checked,
// the whole allocation zeroed before it is freed (keys, shared secrets and plaintexts pass through
// it). Lengths are checked here before a call, since the C functions take
// fixed-size arrays. One `ready()` promise loads the module once (WebAssembly); every function after
// it is synchronous except the WebCrypto hashes. Secrets are Uint8Arrays that callers wipe with
// `wipe()` when done (JS cannot guarantee no copy survives, but the SDK drops none on purpose).
import './webcrypto.js';
import loadLibsodium from 'libsodium';

export const XWING_PUBLIC_KEY_BYTES = 1216;
export const XWING_SECRET_KEY_BYTES = 32;
export const XWING_SEED_BYTES = 32;
export const XWING_CIPHERTEXT_BYTES = 1120;
export const SHARED_SECRET_BYTES = 32;
export const NONCE_BYTES = 24;
export const KEY_ID_BYTES = 8;
export const PAD_BLOCK = 64;
const AEAD_KEY_BYTES = 32;
const AEAD_TAG_BYTES = 16;
const ED25519_SIGNATURE_BYTES = 64;
const ED25519_PUBLIC_KEY_BYTES = 32;
const BASE64_VARIANT_ORIGINAL = 1;  // sodium_base64_VARIANT_ORIGINAL

/**
 * The raw exports of libsodium's emscripten module the SDK calls (wasm32: pointers and size_t are
 * numbers; an unsigned long long length is passed as its (low, high) 32-bit words).
 */
export interface SodiumModule {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(pointer: number): void;
  _sodium_init(): number;
  _sodium_pad(paddedLength: number, buffer: number, unpaddedLength: number, blockSize: number, maxLength: number): number;
  _sodium_unpad(unpaddedLength: number, buffer: number, paddedLength: number, blockSize: number): number;
  _sodium_bin2hex(hex: number, hexMaxLength: number, bin: number, binLength: number): number;
  _sodium_hex2bin(bin: number, binMaxLength: number, hex: number, hexLength: number, ignore: number, binLength: number, hexEnd: number): number;
  _sodium_base642bin(bin: number, binMaxLength: number, b64: number, b64Length: number, ignore: number, binLength: number, b64End: number, variant: number): number;
  _crypto_kdf_hkdf_sha256_extract(prk: number, salt: number, saltLength: number, ikm: number, ikmLength: number): number;
  _crypto_kdf_hkdf_sha256_expand(out: number, outLength: number, info: number, infoLength: number, prk: number): number;
  _crypto_aead_xchacha20poly1305_ietf_encrypt(c: number, cLength: number, m: number, mLength: number, mHigh: number,
                                              ad: number, adLength: number, adHigh: number, nsec: number, nonce: number, key: number): number;
  _crypto_aead_xchacha20poly1305_ietf_decrypt(m: number, mLength: number, nsec: number, c: number, cLength: number, cHigh: number,
                                              ad: number, adLength: number, adHigh: number, nonce: number, key: number): number;
  _crypto_kem_xwing_seed_keypair(publicKey: number, secretKey: number, seed: number): number;
  _crypto_kem_xwing_enc_deterministic(cipherText: number, sharedSecret: number, publicKey: number, seed: number): number;
  _crypto_kem_xwing_dec(sharedSecret: number, cipherText: number, secretKey: number): number;
  _crypto_sign_verify_detached(signature: number, message: number, mLength: number, mHigh: number, publicKey: number): number;
}

let module: SodiumModule | null = null;
let loaded: Promise<void> | null = null;

/** libsodium's module, loaded and initialised (sodium_init) once. */
export function ready(): Promise<void> {
  if (!loaded) {
    // The module's randombytes source (sodium_init stirs it), as libsodium-wrappers sets it up.
    const getRandomValue = (): number => globalThis.crypto.getRandomValues(new Uint32Array(1))[0] >>> 0;
    const load = loadLibsodium as unknown as (options: object) => Promise<SodiumModule>;
    loaded = load({ getRandomValue }).then((m) => {
      if (m._sodium_init() < 0) throw new Error('libsodium could not be initialised (sodium_init failed)');
      module = m;
    });
  }
  return loaded;
}

// Loading starts at import, as libsodium-wrappers started it: code that runs after a later await
// finds the module ready. A failure is kept for ready()'s callers, not reported unhandled here.
ready().catch(() => undefined);

/** libsodium's module after ready() resolved (throws before: a programming error). */
export function sodiumModule(): SodiumModule {
  if (!module) throw new Error('libsodium is not ready: await ready() first');
  return module;
}

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('WebCrypto (crypto.subtle) is not available: Node >= 18 or a secure browser context is needed');
  return s;
}

const encoder = new TextEncoder();
export const utf8 = (text: string): Uint8Array => encoder.encode(text);

/**
 * One allocation in libsodium's heap, laid out front to back: 8 bytes of scratch first (a size_t
 * out-parameter, aligned), then what `put` copies in and `room` reserves.
 */
class Heap {
  private next: number;
  constructor(readonly m: SodiumModule, readonly sizeAt: number, private readonly end: number) {
    this.next = sizeAt + 8;
  }

  /** The size_t (wasm32: 4 bytes, little-endian) in the scratch slot. */
  size(): number {
    const h = this.m.HEAPU8;
    const at = this.sizeAt;
    return (h[at] | (h[at + 1] << 8) | (h[at + 2] << 16) | (h[at + 3] << 24)) >>> 0;
  }

  room(length: number): number {
    const at = this.next;
    this.next += length;
    if (this.next > this.end) throw new Error('libsodium heap layout overflow');  // a size computation here is wrong
    return at;
  }

  put(bytes: Uint8Array): number {
    const at = this.room(bytes.length);
    this.m.HEAPU8.set(bytes, at);
    return at;
  }

  /** A copy of `length` bytes at `at`, out of the heap. */
  take(at: number, length: number): Uint8Array {
    return this.m.HEAPU8.slice(at, at + length);
  }
}

/**
 * `size` bytes (plus the scratch slot) in libsodium's heap, zeroed and freed by `use`'s end. The
 * module exports no sodium_memzero; the wipe is a fill of the WebAssembly memory itself, which
 * the module's later reads observe, so no optimiser can drop it.
 */
function withHeap<T>(size: number, use: (heap: Heap) => T): T {
  const m = sodiumModule();
  const total = 8 + size;
  const base = m._malloc(total);
  if (!base) throw new Error(`libsodium could not allocate ${total} bytes`);
  try {
    return use(new Heap(m, base, base + total));
  } finally {
    m.HEAPU8.fill(0, base, base + total);
    m._free(base);
  }
}

// Hex through libsodium's sodium_bin2hex/sodium_hex2bin (constant-time) inside its heap: the text
// moves in and out with TextEncoder.encodeInto/TextDecoder (native), not per-character JS string
// conversions, which were the SDK's hottest path (every event of an answer is hex).
const asciiDecoder = new TextDecoder();  // hex is ASCII, a subset of UTF-8

export function toHex(bytes: Uint8Array): string {
  const hexLength = 2 * bytes.length;
  return withHeap(bytes.length + hexLength + 1, (h) => {
    const binAt = h.put(bytes);
    const hexAt = h.room(hexLength + 1);
    if (h.m._sodium_bin2hex(hexAt, hexLength + 1, binAt, bytes.length) !== hexAt) throw new Error('sodium_bin2hex failed');
    return asciiDecoder.decode(h.m.HEAPU8.subarray(hexAt, hexAt + hexLength));
  });
}

/** `text` into the heap when it is all ASCII (one byte a character): its address, or null. */
function asciiIntoHeap(h: Heap, text: string): number | null {
  const at = h.room(text.length);
  const { read, written } = encoder.encodeInto(text, h.m.HEAPU8.subarray(at, at + text.length));
  return read === text.length && written === text.length ? at : null;
}

/** Decodes strict hex (either case, every character a digit) to `binAt` (room for text.length / 2 bytes). */
function hexIntoHeap(h: Heap, text: string, binAt: number): boolean {
  if (text.length % 2 !== 0) return false;
  const textAt = asciiIntoHeap(h, text);
  if (textAt === null) return false;
  if (h.m._sodium_hex2bin(binAt, text.length / 2, textAt, text.length, 0, h.sizeAt, 0) !== 0) return false;
  return h.size() === text.length / 2;
}

/** Strict hex (either case) → bytes; null when not hex or, with `length`, not that many bytes. */
export function fromHex(text: string, length?: number): Uint8Array | null {
  if (typeof text !== 'string' || text.length % 2 !== 0) return null;
  if (length !== undefined && text.length !== 2 * length) return null;
  const bytes = text.length / 2;
  return withHeap(bytes + text.length, (h) => {
    const binAt = h.room(bytes);
    return hexIntoHeap(h, text, binAt) ? h.take(binAt, bytes) : null;
  });
}

/** Padded base64 (`+/`, libsodium's sodium_base64_VARIANT_ORIGINAL, as from_base64 decoded it) → bytes; null when not that. */
export function fromBase64(text: string): Uint8Array | null {
  if (typeof text !== 'string') return null;
  const maxBytes = Math.floor((text.length * 3) / 4);
  return withHeap(maxBytes + text.length, (h) => {
    const binAt = h.room(maxBytes);
    const textAt = asciiIntoHeap(h, text);
    if (textAt === null) return null;
    if (h.m._sodium_base642bin(binAt, maxBytes, textAt, text.length, 0, h.sizeAt, 0, BASE64_VARIANT_ORIGINAL) !== 0) return null;
    return h.take(binAt, h.size());
  });
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function wipe(...buffers: (Uint8Array | null | undefined)[]): void {
  for (const b of buffers) b?.fill(0);
}

/**
 * n random bytes from WebCrypto's CSPRNG in one call (libsodium's JS build draws 4 bytes per
 * crypto.getRandomValues call, which made randomness the most expensive part of a request).
 */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) globalThis.crypto.getRandomValues(out.subarray(at, Math.min(n, at + 65536)));
  return out;
}

/**
 * Constant-time equality of two byte strings of the same length (false for different lengths):
 * libsodium.js's own `memcmp`, an OR of XORs with no early exit. The module exports neither
 * sodium_memcmp nor crypto_verify_*, so libsodium-wrappers does it in JavaScript too.
 */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i += 1) difference |= a[i] ^ b[i];
  return difference === 0;
}

/** Throws unless `bytes` is `length` bytes long (the C functions read fixed-size arrays). */
function expectLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new TypeError(`${what} must be ${length} bytes`);
}

const HKDF_PRK_BYTES = 32;

/** HKDF-SHA256 (RFC 5869): Expand(Extract(salt, ikm), info, length). */
export function hkdf(salt: Uint8Array, ikm: Uint8Array, info: string, length: number): Uint8Array {
  return hkdfMany(salt, ikm, [[info, length]])[0];
}

/**
 * Several HKDF-SHA256 outputs of one (salt, ikm): one Extract, one Expand per output, with
 * libsodium's crypto_kdf_hkdf_sha256_* in its heap, as the C++ SDK does. Synchronous: WebCrypto's
 * HKDF cost ~60 us of promise and thread-pool overhead per output in Node, more than the rest of a
 * request's client crypto together (bench/README.md).
 */
export function hkdfMany(salt: Uint8Array, ikm: Uint8Array, outputs: [info: string, length: number][]): Uint8Array[] {
  const infos = outputs.map(([info]) => utf8(info));
  const size = HKDF_PRK_BYTES + salt.length + ikm.length
    + outputs.reduce((n, [, length], i) => n + length + infos[i].length, 0);
  return withHeap(size, (h) => {
    const prkAt = h.room(HKDF_PRK_BYTES);
    const saltAt = h.put(salt);
    const ikmAt = h.put(ikm);
    if (h.m._crypto_kdf_hkdf_sha256_extract(prkAt, saltAt, salt.length, ikmAt, ikm.length) !== 0) throw new Error('HKDF-Extract failed');
    return outputs.map(([, length], i) => {
      const infoAt = h.put(infos[i]);
      const outAt = h.room(length);
      if (h.m._crypto_kdf_hkdf_sha256_expand(outAt, length, infoAt, infos[i].length, prkAt) !== 0) throw new Error('HKDF-Expand failed');
      return h.take(outAt, length);
    });
  });
}

export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-256', data as BufferSource));
}

export async function sha512(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-512', data as BufferSource));
}

/** keyId = first 8 bytes of SHA-256(publicKey). */
export async function keyIdOf(publicKey: Uint8Array): Promise<Uint8Array> {
  return (await sha256(publicKey)).slice(0, KEY_ID_BYTES);
}

/** x ‖ 0x80 ‖ 0x00… to the next multiple of 64 (sodium_pad). */
export function pad(data: Uint8Array): Uint8Array {
  const padded = (Math.floor(data.length / PAD_BLOCK) + 1) * PAD_BLOCK;
  return withHeap(padded, (h) => {
    const at = h.room(padded);
    h.m.HEAPU8.set(data, at);
    if (h.m._sodium_pad(h.sizeAt, at, data.length, PAD_BLOCK, padded) !== 0 || h.size() !== padded) throw new Error('sodium_pad failed');
    return h.take(at, padded);
  });
}

/** The inverse of pad (sodium_unpad); null when the padding is not valid. */
export function unpad(data: Uint8Array): Uint8Array | null {
  if (data.length === 0 || data.length % PAD_BLOCK !== 0) return null;
  return withHeap(data.length, (h) => {
    const at = h.put(data);
    return h.m._sodium_unpad(h.sizeAt, at, data.length, PAD_BLOCK) === 0 ? h.take(at, h.size()) : null;
  });
}

/** XChaCha20-Poly1305 IETF encryption (crypto_aead_xchacha20poly1305_ietf_encrypt): ciphertext ‖ tag. */
export function seal(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  expectLength(key, AEAD_KEY_BYTES, 'an XChaCha20-Poly1305 key');
  expectLength(nonce, NONCE_BYTES, 'an XChaCha20-Poly1305 nonce');
  const cLength = plaintext.length + AEAD_TAG_BYTES;
  return withHeap(key.length + nonce.length + ad.length + plaintext.length + cLength, (h) => {
    const keyAt = h.put(key);
    const nonceAt = h.put(nonce);
    const adAt = h.put(ad);
    const mAt = h.put(plaintext);
    const cAt = h.room(cLength);
    if (h.m._crypto_aead_xchacha20poly1305_ietf_encrypt(cAt, 0, mAt, plaintext.length, 0, adAt, ad.length, 0, 0, nonceAt, keyAt) !== 0) {
      throw new Error('XChaCha20-Poly1305 encryption failed');
    }
    return h.take(cAt, cLength);
  });
}

/** Decrypts into `mAt` (cLength - 16 bytes) what is at `cAt`; false when it does not authenticate. */
function openInHeap(h: Heap, key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, cAt: number, cLength: number, mAt: number): boolean {
  if (key.length !== AEAD_KEY_BYTES || nonce.length !== NONCE_BYTES || cLength < AEAD_TAG_BYTES) return false;
  const keyAt = h.put(key);
  const nonceAt = h.put(nonce);
  const adAt = h.put(ad);
  return h.m._crypto_aead_xchacha20poly1305_ietf_decrypt(mAt, 0, 0, cAt, cLength, 0, adAt, ad.length, 0, nonceAt, keyAt) === 0;
}

/** XChaCha20-Poly1305 IETF decryption; null when the ciphertext does not authenticate. */
export function open(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null {
  if (ciphertext.length < AEAD_TAG_BYTES) return null;
  const mLength = ciphertext.length - AEAD_TAG_BYTES;
  return withHeap(key.length + nonce.length + ad.length + ciphertext.length + mLength, (h) => {
    const cAt = h.put(ciphertext);
    const mAt = h.room(mLength);
    return openInHeap(h, key, nonce, ad, cAt, ciphertext.length, mAt) ? h.take(mAt, mLength) : null;
  });
}

/**
 * unpad(open(key, nonce, ad, fromHex(hex))) in one pass through libsodium's heap: the hex is decoded
 * straight into it and the plaintext unpadded there, in one allocation. null when not hex, not
 * authentic or not padded.
 */
export function openPaddedHex(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, hex: string): Uint8Array | null {
  const cLength = hex.length / 2;
  const mLength = cLength - AEAD_TAG_BYTES;
  if (hex.length % 2 !== 0 || mLength <= 0 || mLength % PAD_BLOCK !== 0) return null;
  return withHeap(key.length + nonce.length + ad.length + hex.length + cLength + mLength, (h) => {
    const cAt = h.room(cLength);
    const mAt = h.room(mLength);
    if (!hexIntoHeap(h, hex, cAt)) return null;
    if (!openInHeap(h, key, nonce, ad, cAt, cLength, mAt)) return null;
    if (h.m._sodium_unpad(h.sizeAt, mAt, mLength, PAD_BLOCK) !== 0) return null;
    return h.take(mAt, h.size());
  });
}

export interface Encapsulation {
  cipherText: Uint8Array;
  sharedSecret: Uint8Array;
}

const XWING_ENCAPSULATION_SEED_BYTES = 64;

/** crypto_kem_xwing_enc_deterministic: the ciphertext and shared secret for `publicKey` and a 64-byte seed. */
export function xwingEncapsulateDeterministic(publicKey: Uint8Array, seed: Uint8Array): Encapsulation {
  expectLength(publicKey, XWING_PUBLIC_KEY_BYTES, 'an X-Wing public key');
  expectLength(seed, XWING_ENCAPSULATION_SEED_BYTES, 'an X-Wing encapsulation seed');
  return withHeap(publicKey.length + seed.length + XWING_CIPHERTEXT_BYTES + SHARED_SECRET_BYTES, (h) => {
    const pkAt = h.put(publicKey);
    const seedAt = h.put(seed);
    const ctAt = h.room(XWING_CIPHERTEXT_BYTES);
    const ssAt = h.room(SHARED_SECRET_BYTES);
    if (h.m._crypto_kem_xwing_enc_deterministic(ctAt, ssAt, pkAt, seedAt) !== 0) throw new Error('X-Wing encapsulation failed');
    return { cipherText: h.take(ctAt, XWING_CIPHERTEXT_BYTES), sharedSecret: h.take(ssAt, SHARED_SECRET_BYTES) };
  });
}

/**
 * X-Wing encapsulation: libsodium's crypto_kem_xwing_enc is randombytes_buf(seed, 64) followed by
 * crypto_kem_xwing_enc_deterministic; the SDK draws the seed in one WebCrypto call (see randomBytes)
 * and wipes it.
 */
export function xwingEncapsulate(publicKey: Uint8Array): Encapsulation {
  const seed = randomBytes(XWING_ENCAPSULATION_SEED_BYTES);
  try {
    return xwingEncapsulateDeterministic(publicKey, seed);
  } finally {
    wipe(seed);
  }
}

/** crypto_kem_xwing_seed_keypair (the enclave's side; the SDK's tests use it). */
export function xwingSeedKeypair(seed: Uint8Array): { publicKey: Uint8Array; privateKey: Uint8Array } {
  expectLength(seed, XWING_SEED_BYTES, 'an X-Wing key seed');
  return withHeap(seed.length + XWING_PUBLIC_KEY_BYTES + XWING_SECRET_KEY_BYTES, (h) => {
    const seedAt = h.put(seed);
    const pkAt = h.room(XWING_PUBLIC_KEY_BYTES);
    const skAt = h.room(XWING_SECRET_KEY_BYTES);
    if (h.m._crypto_kem_xwing_seed_keypair(pkAt, skAt, seedAt) !== 0) throw new Error('X-Wing key generation failed');
    return { publicKey: h.take(pkAt, XWING_PUBLIC_KEY_BYTES), privateKey: h.take(skAt, XWING_SECRET_KEY_BYTES) };
  });
}

/** crypto_kem_xwing_dec (the enclave's side; the SDK's tests use it): the shared secret. */
export function xwingDecapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array {
  expectLength(cipherText, XWING_CIPHERTEXT_BYTES, 'an X-Wing ciphertext');
  expectLength(secretKey, XWING_SECRET_KEY_BYTES, 'an X-Wing secret key');
  return withHeap(cipherText.length + secretKey.length + SHARED_SECRET_BYTES, (h) => {
    const ctAt = h.put(cipherText);
    const skAt = h.put(secretKey);
    const ssAt = h.room(SHARED_SECRET_BYTES);
    if (h.m._crypto_kem_xwing_dec(ssAt, ctAt, skAt) !== 0) throw new Error('X-Wing decapsulation failed');
    return h.take(ssAt, SHARED_SECRET_BYTES);
  });
}

/** crypto_sign_verify_detached (Ed25519); false for a bad signature or wrong lengths. */
export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== ED25519_SIGNATURE_BYTES || publicKey.length !== ED25519_PUBLIC_KEY_BYTES) return false;
  return withHeap(signature.length + message.length + publicKey.length, (h) => {
    const sigAt = h.put(signature);
    const mAt = h.put(message);
    const pkAt = h.put(publicKey);
    return h.m._crypto_sign_verify_detached(sigAt, mAt, message.length, 0, pkAt) === 0;
  });
}
