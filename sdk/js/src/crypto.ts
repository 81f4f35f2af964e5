// The SDK's cryptography, all from libsodium's own JS build (libsodium-wrappers, the same library
// as the C++ SDK) and WebCrypto: X-Wing (crypto_kem_xwing_*), XChaCha20-Poly1305 IETF, pad/unpad,
// Ed25519 verification, hex; HKDF-SHA256 and SHA-256/512 from crypto.subtle (this libsodium build
// exposes only HKDF constants). Nothing here is hand-written cryptography.
//
// Design: one `ready()` promise loads libsodium once (WebAssembly); every function after it is
// synchronous except the WebCrypto ones. Secrets are Uint8Arrays that callers wipe with `wipe()`
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

export function toHex(bytes: Uint8Array): string {
  return sodium().to_hex(bytes);
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** Strict hex (either case) → bytes; null when not hex or, with `length`, not that many bytes. */
export function fromHex(text: string, length?: number): Uint8Array | null {
  if (typeof text !== 'string' || !HEX.test(text)) return null;
  if (length !== undefined && text.length !== 2 * length) return null;
  return sodium().from_hex(text.toLowerCase());
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

export function randomBytes(n: number): Uint8Array {
  return sodium().randombytes_buf(n);
}

/** Constant-time equality of two byte strings of the same length (false for different lengths). */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && sodium().memcmp(a, b);
}

/** HKDF-SHA256 (RFC 5869): Expand(Extract(salt, ikm), info, length). */
export async function hkdf(salt: Uint8Array, ikm: Uint8Array, info: string, length: number): Promise<Uint8Array> {
  return (await hkdfMany(salt, ikm, [[info, length]]))[0];
}

/** Several HKDF-SHA256 outputs of one (salt, ikm): the key is imported once, the expansions run at once. */
export async function hkdfMany(salt: Uint8Array, ikm: Uint8Array, outputs: [info: string, length: number][]): Promise<Uint8Array[]> {
  const key = await subtle().importKey('raw', ikm as BufferSource, 'HKDF', false, ['deriveBits']);
  const bits = await Promise.all(outputs.map(([info, length]) => subtle().deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: salt as BufferSource, info: utf8(info) as BufferSource }, key, 8 * length)));
  return bits.map((b) => new Uint8Array(b));
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

export interface Encapsulation {
  cipherText: Uint8Array;
  sharedSecret: Uint8Array;
}

export function xwingEncapsulate(publicKey: Uint8Array): Encapsulation {
  const { ciphertext, sharedSecret } = sodium().crypto_kem_xwing_enc(publicKey);
  return { cipherText: ciphertext, sharedSecret };
}

export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return sodium().crypto_sign_verify_detached(signature, message, publicKey);
  } catch {
    return false;
  }
}
