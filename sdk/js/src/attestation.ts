// The enclave's attestation document (PROTOCOL.md section 1) and its verification, with the C++
// SDK's policy semantics (protocol::verify_attestation): keyId matches the public key, reportData
// binds the key to the client's fresh challenge, notAfter is in the future, the measurement is the
// expected one when required, and the provider is trusted: "simulated" only with the platform's
// Ed25519 public key given explicitly (platformPublicKey, as --platform-public-key); "sev-snp" and
// "tdx" by the hardware verifier (hardware.ts / tdx.ts, loaded with import() only then: the C++
// verifier's checks, policy and pinned AMD / Intel roots), its evidence's REPORT_DATA and
// MEASUREMENT (MRTD for TDX) the document's. The binding is versioned like the C++
// core's (protocol::expected_report_data): binding 2 ("binding": 2) covers keyId and notAfter and is
// required unless policy.allowBindingV1 accepts enclaves of older releases (docs/key-rotation.md).
import { concat, equal, ed25519Verify, fromBase64, fromHex, keyIdOf, sha512, toHex, utf8, KEY_ID_BYTES, XWING_PUBLIC_KEY_BYTES } from './crypto.js';
import { AttestationError } from './errors.js';

export const CHALLENGE_BYTES = 32;
const REPORT_DATA_BYTES = 64;
const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;
const MAX_EVIDENCE_BASE64 = 64 * 1024;
const MAX_MEASUREMENT_BYTES = 256;

export interface AttestationPolicy {
  /** Hardware providers accepted (default ["sev-snp", "tdx"], both verified by this SDK). */
  allowedProviders?: string[];
  /**
   * The hardware measurement policy: the JSON of the C++ SDK's policy file (`--attestation-policy`,
   * docs/attestation.md), as text or as the parsed object, with the same semantics (providers,
   * allowDebug, tdx lists and minTcbStatus, sevSnp lists, minTcb, allowSmt, allowMigrationAgent;
   * unknown keys refused).
   * Absent: authenticity and key binding are still verified, debug is refused.
   */
  hardware?: string | Record<string, unknown>;
  /** Require this measurement (hex). */
  expectedMeasurement?: string;
  /**
   * Also accept binding 1 (enclaves of older releases): its reportData does not cover notAfter, so
   * whoever relays the document can extend the key's life. Off by default.
   */
  allowBindingV1?: boolean;
}

export interface AttestationDocument {
  keyId: string;
  kem: 'X-Wing';
  publicKey: Uint8Array;
  notAfter: number;
  provider: string;
  reportData: Uint8Array;
  evidence: Uint8Array;
  measurement: string;
  /** The binding reportData was made with: the document's "binding", 1 when absent (older enclaves). */
  binding: 1 | 2;
  /** The models the enclave serves (informational, outside reportData; absent from older enclaves). */
  models?: string[];
  /** Collateral by file name (vcek.der, ask_ark.pem, …): outside reportData, authenticated by its own signatures. */
  collateral: Record<string, Uint8Array>;
  /** Set by verifyAttestation for hardware evidence: the earliest end of the verified certificates (Unix seconds). */
  validUntil?: number;
}

const fail = (message: string): never => {
  throw new AttestationError('attestation_failed', message);
};

function hexField(obj: Record<string, unknown>, name: string, bytes?: number): Uint8Array {
  const value = obj[name];
  if (typeof value !== 'string') return fail(`the attestation document is malformed: field "${name}" is missing or not a string`);
  const decoded = fromHex(value, bytes);
  if (!decoded) return fail(`the attestation document is malformed: field "${name}" is not ${bytes ?? 'valid'}${bytes ? '-byte' : ''} hex`);
  return decoded;
}

/** The JSON text of GET /rvenc/attestation → document; AttestationError when malformed. */
export function parseAttestation(text: string): AttestationDocument {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fail('the attestation document is malformed: not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('the attestation document is malformed: not a JSON object');
  const obj = value as Record<string, unknown>;
  const keyId = hexField(obj, 'keyId', KEY_ID_BYTES);
  if (obj.kem !== 'X-Wing') fail('the attestation document is malformed: field "kem" must be "X-Wing"');
  const publicKey = hexField(obj, 'publicKey', XWING_PUBLIC_KEY_BYTES);
  const notAfter = obj.notAfter;
  if (typeof notAfter !== 'number' || !Number.isSafeInteger(notAfter) || notAfter < 0) {
    fail('the attestation document is malformed: field "notAfter" must be a non-negative integer');
  }
  if (typeof obj.provider !== 'string') fail('the attestation document is malformed: field "provider" is missing');
  if (obj.binding !== undefined && obj.binding !== 1 && obj.binding !== 2) {
    fail('the attestation document is malformed: field "binding" must be 1 or 2');
  }
  const binding = (obj.binding ?? 1) as 1 | 2;
  const reportData = hexField(obj, 'reportData', REPORT_DATA_BYTES);
  if (typeof obj.evidence !== 'string' || obj.evidence.length > MAX_EVIDENCE_BASE64) {
    fail('the attestation document is malformed: field "evidence" is missing or too large');
  }
  const evidence = fromBase64(obj.evidence as string) ?? fail('the attestation document is malformed: field "evidence" is not valid base64');
  const measurement = hexField(obj, 'measurement');
  if (measurement.length > MAX_MEASUREMENT_BYTES) fail('the attestation document is malformed: field "measurement" is too long');
  let models: string[] | undefined;
  if (obj.models !== undefined && obj.models !== null) {
    if (!Array.isArray(obj.models) || !obj.models.every((m) => typeof m === 'string')) {
      fail('the attestation document is malformed: field "models" must be a list of strings');
    }
    models = obj.models as string[];
  }
  const doc: AttestationDocument = {
    keyId: toHex(keyId), kem: 'X-Wing', publicKey, notAfter: notAfter as number,
    provider: obj.provider as string, reportData, evidence, measurement: toHex(measurement), binding,
    collateral: parseCollateral(obj.collateral),
  };
  if (models) doc.models = models;
  return doc;
}

const MAX_COLLATERAL_FILES = 32;
const MAX_COLLATERAL_BYTES = 256 * 1024;
const COLLATERAL_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;

/** The document's `collateral` (docs/attestation.md): absent → none; bounded as the C++ clients bound it. */
function parseCollateral(value: unknown): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  if (value === undefined || value === null) return out;
  if (typeof value !== 'object' || Array.isArray(value)) return fail('the attestation document is malformed: field "collateral" must be an object');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > MAX_COLLATERAL_FILES) fail(`the attestation document is malformed: more than ${MAX_COLLATERAL_FILES} collateral files`);
  let total = 0;
  for (const [name, content] of entries) {
    if (!COLLATERAL_NAME.test(name)) fail('the attestation document is malformed: a collateral file name is not 1-64 characters of [A-Za-z0-9._-] (not starting with ".")');
    if (typeof content !== 'string' || content.length > (4 * MAX_COLLATERAL_BYTES) / 3 + 4) {
      fail(`the attestation document is malformed: collateral ${name} is not a base64 string of at most ${MAX_COLLATERAL_BYTES} bytes`);
    }
    out[name] = fromBase64(content as string) ?? fail(`the attestation document is malformed: collateral ${name} is not valid base64`);
    total += out[name].length;
    if (total > MAX_COLLATERAL_BYTES) fail(`the attestation document is malformed: collateral is larger than ${MAX_COLLATERAL_BYTES} bytes in all`);
  }
  return out;
}

/** Binding 1: SHA-512("rvenc-attest-v1" ‖ publicKey ‖ challenge) */
export function reportDataFor(publicKey: Uint8Array, challenge: Uint8Array): Promise<Uint8Array> {
  return sha512(concat(utf8('rvenc-attest-v1'), publicKey, challenge));
}

/** Binding 2: SHA-512("rvenc-attest-v2" ‖ keyId ‖ publicKey ‖ u64be(notAfter) ‖ challenge) */
export async function reportDataV2For(publicKey: Uint8Array, notAfter: number, challenge: Uint8Array): Promise<Uint8Array> {
  if (!Number.isSafeInteger(notAfter) || notAfter < 0) fail('notAfter must be a non-negative integer');
  const notAfterBe = new Uint8Array(8);
  new DataView(notAfterBe.buffer).setBigUint64(0, BigInt(notAfter));
  return sha512(concat(utf8('rvenc-attest-v2'), await keyIdOf(publicKey), publicKey, notAfterBe, challenge));
}

/** The reportData `doc` must carry for `challenge` under its own binding version. */
export function expectedReportData(doc: AttestationDocument, challenge: Uint8Array): Promise<Uint8Array> {
  return doc.binding === 2 ? reportDataV2For(doc.publicKey, doc.notAfter, challenge) : reportDataFor(doc.publicKey, challenge);
}

export interface VerifyOptions {
  policy?: AttestationPolicy;
  /** Hex Ed25519 public key of the simulated provider's platform; "simulated" is refused without it. */
  platformPublicKey?: string;
  /** Seconds since the epoch (tests); the system clock otherwise. */
  now?: number;
}

/** Throws AttestationError unless `doc` verifies for `challenge` under the options. */
export async function verifyAttestation(doc: AttestationDocument, challenge: Uint8Array, options: VerifyOptions = {}): Promise<void> {
  const { policy = {}, platformPublicKey } = options;
  if (toHex(await keyIdOf(doc.publicKey)) !== doc.keyId) fail('attestation keyId does not match its public key');
  if (doc.binding < 2 && !policy.allowBindingV1) {
    fail('attestation uses binding 1, whose reportData does not cover notAfter (an enclave of an older release, or a '
      + 'document stripped of "binding"); this SDK requires binding 2 (attestationPolicy.allowBindingV1 accepts older enclaves)');
  }
  if (!equal(await expectedReportData(doc, challenge), doc.reportData)) {
    fail(doc.binding === 2
      ? 'attestation reportData does not bind the public key, its notAfter and our challenge (binding 2)'
      : 'attestation reportData does not bind the public key to our challenge');
  }
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (doc.notAfter <= now) fail('attestation has expired (notAfter is in the past)');
  if (policy.expectedMeasurement !== undefined) {
    const expected = fromHex(policy.expectedMeasurement);
    if (!expected) fail('attestationPolicy.expectedMeasurement is not hex');
    if (!equal(expected!, fromHex(doc.measurement)!)) fail('attestation measurement is not the expected one');
  }
  if (doc.provider === 'simulated') {
    if (!platformPublicKey) fail('provider "simulated" is not trusted without a platform public key (platformPublicKey)');
    const key = fromHex(platformPublicKey!, ED25519_PUBLIC_KEY_BYTES);
    if (!key) fail('platformPublicKey must be 32 bytes of hex');
    if (doc.evidence.length !== ED25519_SIGNATURE_BYTES) fail('simulated evidence must be a 64-byte Ed25519 signature');
    const message = concat(doc.reportData, fromHex(doc.measurement)!);
    if (!ed25519Verify(doc.evidence, message, key!)) fail('simulated evidence signature does not verify with the platform key');
    return;
  }
  const allowed = policy.allowedProviders ?? ['sev-snp', 'tdx'];
  if (!allowed.includes(doc.provider)) fail(`attestation provider "${doc.provider.slice(0, 40)}" is not allowed by the policy`);
  if (doc.provider !== 'sev-snp' && doc.provider !== 'tdx') fail(`attestation provider "${doc.provider.slice(0, 40)}" is unknown`);
  doc.validUntil = await verifyHardware(doc, policy, now);
}

/**
 * The evidence through the hardware verifier, its REPORT_DATA required to be the document's
 * reportData (check report_data, the verifier's last), then its MEASUREMENT (TDX: MRTD) against the
 * document's; the earliest end of what was verified. Failures read "<provider> evidence: <check>: …", as the C++ clients' do.
 */
async function verifyHardware(doc: AttestationDocument, policy: AttestationPolicy, now: number): Promise<number> {
  const hardware = await import('./hardware.js');
  const failed = (check: string, detail: string): never => fail(`${doc.provider} evidence: ${check}: ${detail}`);
  try {
    const verified = await hardware.verifyEvidence({
      provider: doc.provider, evidence: doc.evidence, collateral: doc.collateral, policy: hardware.parseHardwarePolicy(policy.hardware), at: now,
      expectedReportData: doc.reportData,
    });
    if (toHex(verified.measurement) !== doc.measurement) failed('measurement', 'the document\'s measurement is not the evidence\'s MEASUREMENT');
    return verified.validUntil;
  } catch (error) {
    if (error instanceof hardware.HardwareFailure) return fail(`${doc.provider} evidence: ${error.message}`);
    throw error;
  }
}
