// The SDK's cryptography, all from libsodium's own JS build (libsodium-wrappers, the same library
// as the C++ SDK) and WebCrypto: X-Wing (crypto_kem_xwing_*), XChaCha20-Poly1305 IETF, pad/unpad,
// Ed25519 verification, HKDF-SHA256 (libsodium's crypto_kdf_hkdf_sha256_*, from the module the
// wrappers export); SHA-256/512 and randomness from WebCrypto. Nothing here is hand-written
// cryptography (hex coding is plain JS, branch-free like libsodium's).
//
// Design: one `ready()` promise loads libsodium once (WebAssembly); every function after it is
// synchronous except the WebCrypto hashes. Secrets are Uint8Arrays that callers wipe with `wipe()`
// when done (JS cannot guarantee no copy survives, but the SDK drops none on purpose).
import './webcrypto.js';
import sodiumModule from 'libsodium-wrappers';

export type Sodium = typeof sodiumModule;

export const XWING_PUBLIC_KEY_BYTES = 1216;
export const XWING_CIPHERTEXT_BYTES = 1120;
export const SHARED_SECRET_BYTES = 32;
export const NONCE_BYTES = 24;
export const KEY_ID_BYTES = 8;
export const PAD_BLOCK = 64;

let loaded: Promise<Sodium> | null = null;

/** libsodium, loaded once. */
export function ready(): Promise<Sodium> {
  if (!loaded) loaded = sodiumModule.ready.then(() => sodiumModule);
  return loaded;
}

/** libsodium after ready() resolved (throws before: a programming error). */
export function sodium(): Sodium {
  if (!sodiumModule.crypto_kem_xwing_enc) throw new Error('libsodium is not ready: await ready() first');
  return sodiumModule;
}

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('WebCrypto (crypto.subtle) is not available: Node >= 18 or a secure browser context is needed');
  return s;
}

const encoder = new TextEncoder();
export const utf8 = (text: string): Uint8Array => encoder.encode(text);

// Hex through libsodium's sodium_bin2hex/sodium_hex2bin (constant-time) inside its heap: the text
// moves in and out with TextEncoder.encodeInto/TextDecoder (native), not the wrappers' per-character
// JS string conversions, which were the SDK's hottest path (every event of an answer is hex).
const asciiDecoder = new TextDecoder();  // hex is ASCII, a subset of UTF-8
const textEncoder = new TextEncoder();

export function toHex(bytes: Uint8Array): string {
  const hexLength = 2 * bytes.length;
  return withHeap(bytes.length + hexLength + 1, (m, base) => {
    const hexAt = base + bytes.length;
    m.HEAPU8.set(bytes, base);
    m._sodium_bin2hex(hexAt, hexLength + 1, base, bytes.length);
    return asciiDecoder.decode(m.HEAPU8.subarray(hexAt, hexAt + hexLength));
  });
}

/**
 * Decodes strict hex (either case, every character a digit) into the heap at `binAt` (room for
 * text.length / 2 bytes), using `textAt` (text.length bytes) and `lengthAt` (a size_t) as scratch.
 */
function hexIntoHeap(m: SodiumModule, text: string, binAt: number, textAt: number, lengthAt: number): boolean {
  if (text.length % 2 !== 0) return false;
  const { read, written } = textEncoder.encodeInto(text, m.HEAPU8.subarray(textAt, textAt + text.length));
  if (read !== text.length || written !== text.length) return false;  // not ASCII
  if (m._sodium_hex2bin(binAt, text.length / 2, textAt, text.length, 0, lengthAt, 0) !== 0) return false;
  return readSize(m, lengthAt) === text.length / 2;
}

/** A size_t (wasm32: 4 bytes, little-endian) in the heap. */
function readSize(m: SodiumModule, at: number): number {
  const h = m.HEAPU8;
  return (h[at] | (h[at + 1] << 8) | (h[at + 2] << 16) | (h[at + 3] << 24)) >>> 0;
}

/** Strict hex (either case) → bytes; null when not hex or, with `length`, not that many bytes. */
export function fromHex(text: string, length?: number): Uint8Array | null {
  if (typeof text !== 'string' || text.length % 2 !== 0) return null;
  if (length !== undefined && text.length !== 2 * length) return null;
  const bytes = text.length / 2;
  return withHeap(8 + text.length + bytes, (m, base) => {
    const binAt = base + 8 + text.length;
    return hexIntoHeap(m, text, binAt, base + 8, base) ? m.HEAPU8.slice(binAt, binAt + bytes) : null;
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

/** Constant-time equality of two byte strings of the same length (false for different lengths). */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && sodium().memcmp(a, b);
}

/**
 * The part of libsodium's WebAssembly module (exported by libsodium-wrappers as `libsodium`) that
 * the wrappers do not wrap: crypto_kdf_hkdf_sha256_extract/expand, the functions the C++ SDK calls
 * (src/crypto/crypto.cpp). This build's wrappers expose only the HKDF constants.
 */
interface SodiumModule {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(pointer: number): void;
  _crypto_kdf_hkdf_sha256_extract(prk: number, salt: number, saltLength: number, ikm: number, ikmLength: number): number;
  _crypto_kdf_hkdf_sha256_expand(out: number, outLength: number, info: number, infoLength: number, prk: number): number;
  // size_t/unsigned long long arguments: wasm32 passes a 64-bit length as (low, high) words.
  _crypto_aead_xchacha20poly1305_ietf_decrypt(m: number, mLength: number, nsec: number, c: number, cLength: number, cHigh: number,
                                              ad: number, adLength: number, adHigh: number, nonce: number, key: number): number;
  _sodium_unpad(unpaddedLength: number, buffer: number, paddedLength: number, blockSize: number): number;
  _sodium_bin2hex(hex: number, hexMaxLength: number, bin: number, binLength: number): number;
  _sodium_hex2bin(bin: number, binMaxLength: number, hex: number, hexLength: number, ignore: number, binLength: number, hexEnd: number): number;
}

function wasm(): SodiumModule {
  return (sodium() as unknown as { libsodium: SodiumModule }).libsodium;
}

/** One allocation in libsodium's heap, wiped and freed by `use`'s end. */
function withHeap<T>(size: number, use: (m: SodiumModule, base: number) => T): T {
  const m = wasm();
  const base = m._malloc(size);
  if (!base) throw new Error(`libsodium could not allocate ${size} bytes`);
  try {
    return use(m, base);
  } finally {
    m.HEAPU8.fill(0, base, base + size);
    m._free(base);
  }
}

const HKDF_PRK_BYTES = 32;

/** HKDF-SHA256 (RFC 5869): Expand(Extract(salt, ikm), info, length). */
export function hkdf(salt: Uint8Array, ikm: Uint8Array, info: string, length: number): Uint8Array {
  return hkdfMany(salt, ikm, [[info, length]])[0];
}

/**
 * Several HKDF-SHA256 outputs of one (salt, ikm): one Extract, one Expand per output, with
 * libsodium's crypto_kdf_hkdf_sha256_* in its heap (wiped and freed before returning), as the C++
 * SDK does. Synchronous: WebCrypto's HKDF cost ~60 us of promise and thread-pool overhead per
 * output in Node, more than the rest of a request's client crypto together (bench/README.md).
 */
export function hkdfMany(salt: Uint8Array, ikm: Uint8Array, outputs: [info: string, length: number][]): Uint8Array[] {
  const infos = outputs.map(([info]) => utf8(info));
  const size = HKDF_PRK_BYTES + salt.length + ikm.length
    + outputs.reduce((n, [, length], i) => n + length + infos[i].length, 0);
  return withHeap(size, (m, base) => {
    let at = base + HKDF_PRK_BYTES;
    const place = (bytes: Uint8Array): number => {
      m.HEAPU8.set(bytes, at);
      at += bytes.length;
      return at - bytes.length;
    };
    const saltAt = place(salt);
    const ikmAt = place(ikm);
    if (m._crypto_kdf_hkdf_sha256_extract(base, saltAt, salt.length, ikmAt, ikm.length) !== 0) throw new Error('HKDF-Extract failed');
    return outputs.map(([, length], i) => {
      const infoAt = place(infos[i]);
      const outAt = at;
      at += length;
      if (m._crypto_kdf_hkdf_sha256_expand(outAt, length, infoAt, infos[i].length, base) !== 0) throw new Error('HKDF-Expand failed');
      return m.HEAPU8.slice(outAt, outAt + length);
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

/** x ‖ 0x80 ‖ 0x00… to the next multiple of 64 (libsodium's sodium_pad). */
export function pad(data: Uint8Array): Uint8Array {
  return sodium().pad(data, PAD_BLOCK);
}

/** The inverse of pad; null when the padding is not valid. */
export function unpad(data: Uint8Array): Uint8Array | null {
  if (data.length === 0 || data.length % PAD_BLOCK !== 0) return null;
  try {
    return sodium().unpad(data, PAD_BLOCK);
  } catch {
    return null;
  }
}

export function seal(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return sodium().crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, key);
}

/** null when the ciphertext does not authenticate. */
export function open(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null {
  try {
    return sodium().crypto_aead_xchacha20poly1305_ietf_decrypt(null, ciphertext, ad, nonce, key);
  } catch {
    return null;
  }
}

const AEAD_TAG_BYTES = 16;

/**
 * unpad(open(key, nonce, ad, fromHex(hex))) in one pass through libsodium's heap: the hex is decoded
 * straight into it and the plaintext unpadded there, one allocation instead of the wrappers' ten
 * (they copy every argument in and the result out). null when not hex, not authentic or not padded.
 */
export function openPaddedHex(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, hex: string): Uint8Array | null {
  const cLength = hex.length / 2;
  const mLength = cLength - AEAD_TAG_BYTES;
  if (hex.length % 2 !== 0 || mLength <= 0 || mLength % PAD_BLOCK !== 0) return null;
  const size = 8 + key.length + nonce.length + ad.length + hex.length + cLength + mLength;
  return withHeap(size, (m, base) => {
    const lengthAt = base;  // a size_t, 4-byte aligned
    const keyAt = base + 8;
    const nonceAt = keyAt + key.length;
    const adAt = nonceAt + nonce.length;
    const textAt = adAt + ad.length;
    const cAt = textAt + hex.length;
    const mAt = cAt + cLength;
    m.HEAPU8.set(key, keyAt);
    m.HEAPU8.set(nonce, nonceAt);
    m.HEAPU8.set(ad, adAt);
    if (!hexIntoHeap(m, hex, cAt, textAt, lengthAt)) return null;
    if (m._crypto_aead_xchacha20poly1305_ietf_decrypt(mAt, 0, 0, cAt, cLength, 0, adAt, ad.length, 0, nonceAt, keyAt) !== 0) return null;
    if (m._sodium_unpad(lengthAt, mAt, mLength, PAD_BLOCK) !== 0) return null;
    return m.HEAPU8.slice(mAt, mAt + readSize(m, lengthAt));
  });
}

export interface Encapsulation {
  cipherText: Uint8Array;
  sharedSecret: Uint8Array;
}

const XWING_ENCAPSULATION_SEED_BYTES = 64;

/**
 * X-Wing encapsulation: libsodium's crypto_kem_xwing_enc is randombytes_buf(seed, 64) followed by
 * crypto_kem_xwing_enc_deterministic; the SDK draws the seed in one WebCrypto call (see randomBytes)
 * and wipes it.
 */
export function xwingEncapsulate(publicKey: Uint8Array): Encapsulation {
  const seed = randomBytes(XWING_ENCAPSULATION_SEED_BYTES);
  try {
    const { ciphertext, sharedSecret } = sodium().crypto_kem_xwing_enc_deterministic(publicKey, seed);
    return { cipherText: ciphertext, sharedSecret };
  } finally {
    wipe(seed);
  }
}

export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return sodium().crypto_sign_verify_detached(signature, message, publicKey);
  } catch {
    return false;
  }
}
