// What the SEV-SNP and TDX verifiers of the TypeScript SDK (hardware.ts, tdx.ts) share: the named
// failure (HardwareFailure, the C++ verifier's Check/Failure), certificate and CRL parsing, the
// questions they ask of a certificate (extension, CA flag, names, validity) and raw ECDSA checks.
//
// Design: everything X.509 goes through PKI.js + asn1js (no hand-written DER); every signature is
// WebCrypto's, the same in Node and browsers. Parsers turn any exception of those libraries into
// HardwareFailure(malformed) naming the file, so bad input never escapes as another error.
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

export type Check = 'malformed' | 'signature' | 'cert_chain' | 'crl' | 'expired' | 'tcb_status' | 'qe_identity'
  | 'debug' | 'measurement' | 'report_data';

/** A failed verification: `check` names the check, as the C++ verifier's Failure does. */
export class HardwareFailure extends Error {
  constructor(readonly check: Check, detail: string) {
    super(`${check}: ${detail}`);
    this.name = 'HardwareFailure';
  }
}

export const fail = (check: Check, detail: string): never => {
  throw new HardwareFailure(check, detail);
};

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const errorText = (error: unknown) => String((error as Error)?.message ?? error).slice(0, 120);

export function parseDer(der: Uint8Array, what: string): pkijs.Certificate {
  try {
    return pkijs.Certificate.fromBER(der as BufferSource);
  } catch (error) {
    return fail('malformed', `${what} is not a DER certificate (${errorText(error)})`);
  }
}

function base64Block(body: string, what: string): Uint8Array {
  try {
    return Uint8Array.from(atob(body.replace(/\s+/g, '')), (c) => c.charCodeAt(0));
  } catch {
    return fail('malformed', `${what} is not base64`);
  }
}

export function parsePem(text: string, what: string): pkijs.Certificate[] {
  const blocks = [...text.matchAll(/-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g)];
  if (blocks.length === 0) fail('malformed', `${what} holds no PEM certificate`);
  return blocks.map((b, i) => parseDer(base64Block(b[1], `${what}: certificate ${i + 1}`), `${what}: certificate ${i + 1}`));
}

/** A CRL in DER or PEM ("X509 CRL"); malformed naming `what` otherwise. */
export function parseCrl(bytes: Uint8Array, what: string): pkijs.CertificateRevocationList {
  let der = bytes;
  const text = new TextDecoder().decode(bytes.subarray(0, 64)).trimStart();
  if (text.startsWith('-----BEGIN')) {
    const block = /-----BEGIN X509 CRL-----([A-Za-z0-9+/=\s]+?)-----END X509 CRL-----/.exec(new TextDecoder().decode(bytes));
    if (!block) fail('malformed', `${what}: the CRL does not parse`);
    der = base64Block(block![1], what);
  }
  try {
    return pkijs.CertificateRevocationList.fromBER(der as BufferSource);
  } catch {
    return fail('malformed', `${what} is not a DER certificate revocation list`);
  }
}

/** The content of extension `oid`'s extnValue (null when absent). */
export function extension(cert: pkijs.Certificate, oid: string): Uint8Array | null {
  const ext = cert.extensions?.find((e) => e.extnID === oid);
  return ext ? new Uint8Array(ext.extnValue.valueBlock.valueHexView) : null;
}

/** One DER value that is exactly `bytes` (null when it does not parse or has trailing bytes). */
export function derValue(bytes: Uint8Array): asn1js.AsnType | null {
  try {
    const parsed = asn1js.fromBER(bytes as BufferSource);
    return parsed.offset === -1 || parsed.offset !== bytes.length ? null : parsed.result;
  } catch {
    return null;  // asn1js throws on some malformed values (e.g. a GeneralizedTime that is not a time)
  }
}

const OID_CN = '2.5.4.3';

export function commonName(cert: pkijs.Certificate): string | undefined {
  const value = cert.subject.typesAndValues.find((t) => t.type === OID_CN)?.value;
  return (value?.valueBlock as { value?: string } | undefined)?.value;
}

/** The subject's CN for messages: printable ASCII, at most 64 characters ("?" when none). */
export function shownName(cert: pkijs.Certificate): string {
  return (commonName(cert) ?? '?').replace(/[^\x20-\x7e]/g, '?').slice(0, 64) || '?';
}

export const validAt = (cert: pkijs.Certificate, at: Date) => cert.notBefore.value <= at && at <= cert.notAfter.value;
export const sameName = (a: pkijs.RelativeDistinguishedNames, b: pkijs.RelativeDistinguishedNames) => a.isEqual(b);
export const notAfterSeconds = (cert: pkijs.Certificate) => Math.floor(cert.notAfter.value.getTime() / 1000);

/** basicConstraints cA (OpenSSL's X509_check_ca also counts keyCertSign in keyUsage). */
export function isCa(cert: pkijs.Certificate): boolean {
  const basic = cert.extensions?.find((e) => e.extnID === '2.5.29.19')?.parsedValue as pkijs.BasicConstraints | undefined;
  return basic?.cA === true || keyUsageBit(cert, 5);
}

/** keyUsage bit `bit` (5 keyCertSign, 6 cRLSign); true when the certificate has no keyUsage. */
export function keyUsageBit(cert: pkijs.Certificate, bit: number, absent = false): boolean {
  const usage = extension(cert, '2.5.29.15');
  if (!usage) return absent;
  const value = derValue(usage);
  if (!(value instanceof asn1js.BitString)) return false;
  const bytes = new Uint8Array(value.valueBlock.valueHexView);
  return bit >> 3 < bytes.length && (bytes[bit >> 3] & (0x80 >> (bit & 7))) !== 0;
}

export async function signedBy(cert: pkijs.Certificate, issuer: pkijs.Certificate): Promise<boolean> {
  try {
    return await cert.verify(issuer);
  } catch {
    return false;
  }
}

export function serialHex(cert: pkijs.Certificate): string {
  return toHex(new Uint8Array(cert.serialNumber.valueBlock.valueHexView));
}

/** Whether `crl` lists a certificate of serial `serial` (hex of the DER integer's bytes). */
export function lists(crl: pkijs.CertificateRevocationList, serial: string): boolean {
  return crl.revokedCertificates?.some((r) => toHex(new Uint8Array(r.userCertificate.valueBlock.valueHexView)) === serial) ?? false;
}

export async function crlSignedBy(crl: pkijs.CertificateRevocationList, issuer: pkijs.Certificate): Promise<boolean> {
  try {
    return await crl.verify({ issuerCertificate: issuer });
  } catch {
    return false;
  }
}

/**
 * An ECDSA signature in IEEE P1363 form (r ‖ s, big-endian, as Intel's quotes and collateral carry
 * it) over `message` with SHA-256 or SHA-384, by `key` (a CryptoKey, or a certificate's key).
 * HardwareFailure(signature) naming `what` when it does not verify.
 */
export async function verifyEcdsa(key: CryptoKey | pkijs.Certificate, curve: 'P-256' | 'P-384', hash: 'SHA-256' | 'SHA-384',
                                  signature: Uint8Array, message: Uint8Array, what: string): Promise<void> {
  const subtle = globalThis.crypto.subtle;
  let ok = false;
  try {
    const cryptoKey = key instanceof pkijs.Certificate
      ? await subtle.importKey('spki', key.subjectPublicKeyInfo.toSchema().toBER(false), { name: 'ECDSA', namedCurve: curve }, false, ['verify'])
      : key;
    ok = await subtle.verify({ name: 'ECDSA', hash }, cryptoKey, signature as BufferSource, message as BufferSource);
  } catch (error) {
    fail('signature', `${what}: the signing key cannot verify (${errorText(error)})`);
  }
  if (!ok) fail('signature', `${what}: the ECDSA signature does not verify`);
}
