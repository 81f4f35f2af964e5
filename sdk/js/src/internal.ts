// Test-only entry point (not in the package's exports map): the deterministic pieces the shared
// vectors need (seeded X-Wing, fixed nonce/timestamp sealing, response decoding with given keys,
// attestation checks with a given challenge and clock). Production code never imports it.
import {
  hkdf, hkdfMany, open, openPaddedHex, randomBytes, ready, seal, sodiumModule, toHex, fromHex, fromBase64, pad, unpad, keyIdOf,
  equal, ed25519Verify, xwingEncapsulate, xwingEncapsulateDeterministic, xwingSeedKeypair, xwingDecapsulate,
} from './crypto.js';
import { expectedReportData, parseAttestation, reportDataFor, reportDataV2For, verifyAttestation } from './attestation.js';
import { refreshTime } from './client.js';
import {
  deriveRequestKey, deriveResponseSecret, deriveV2ResponseKeys, deriveV3ResponseKeys, eventNonce,
  ResponseDecoder, ResponseOpener, sealRequest, sealRequestWithDecoder,
} from './protocol.js';
import { SseParser } from './sse.js';
import { CompletionAssembler } from './assemble.js';
import { errorFromHttp } from './errors.js';

/** HKDF-Extract(salt, ikm) = HMAC-SHA256(salt, ikm), for checking the vectors' intermediate rprk. */
export async function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Promise<Uint8Array> {
  const key = await globalThis.crypto.subtle.importKey('raw', salt as BufferSource, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await globalThis.crypto.subtle.sign('HMAC', key, ikm as BufferSource));
}

export {
  sodiumModule, ready, hkdf, hkdfMany, open, openPaddedHex, randomBytes, toHex, seal, xwingEncapsulate, xwingEncapsulateDeterministic,
  xwingSeedKeypair, xwingDecapsulate, equal, ed25519Verify, fromHex, fromBase64, pad, unpad, keyIdOf, parseAttestation, reportDataFor, reportDataV2For,
  expectedReportData, refreshTime, verifyAttestation,
  deriveRequestKey, deriveResponseSecret, deriveV2ResponseKeys, deriveV3ResponseKeys, eventNonce,
  ResponseDecoder, ResponseOpener, sealRequest, sealRequestWithDecoder, SseParser, CompletionAssembler, errorFromHttp,
};
