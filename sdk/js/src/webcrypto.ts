// Node 18 has WebCrypto only as require('node:crypto').webcrypto, not as globalThis.crypto, which
// libsodium's ES module build and the SDK's HKDF need: this module (imported before libsodium) puts
// it there. Browsers and Node >= 19 have it already; the import name is not a literal, so bundlers
// leave it out of the browser build.
const g = globalThis as { crypto?: Crypto; process?: { versions?: { node?: string } } };
if (typeof g.crypto?.getRandomValues !== 'function' && g.process?.versions?.node) {
  const name = 'node:crypto';
  const { webcrypto } = (await import(/* webpackIgnore: true */ name)) as { webcrypto: Crypto };
  Object.defineProperty(globalThis, 'crypto', { value: webcrypto, configurable: true, writable: true });
}
export {};
