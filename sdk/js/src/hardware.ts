// Hardware attestation in the TypeScript SDK: the policy (policy.cpp), the dispatch by provider
// (TDX: tdx.ts) and the AMD SEV-SNP verifier, with the C++ verifier's checks, order, names and
// policy semantics (src/attestation/sev_snp.cpp, docs/attestation.md), tested on the same fixtures
// (shared/attestation/sev-snp/). SEV-SNP checks, in order, the first failure thrown as
// HardwareFailure naming its check:
//   1. malformed   the report (1184 bytes, version 2/3/5), vcek.der/vlek.der, ask_ark.pem, crl.der
//   2. cert_chain / expired / crl
//                  VCEK → ASK → a pinned ARK (VLEK → ASVK → ARK) valid at `at`; with crl.der (the
//                  ARK's CRL, optional) signed by a certificate of the chain, current at `at`, and
//                  not listing a certificate its issuer issued; the products of the
//                  VCEK (productName), the ARK (CN) and the report's CPUID agree
//   3. signature   ECDSA P-384 / SHA-384 by the VCEK/VLEK over bytes 0..0x29F
//   4. cert_chain  CHIP_ID = the VCEK's hwID
//   5. tcb_status  REPORTED_TCB = the certificate's TCB; ≥ policy.sevSnp.minTcb per component
//   6. debug       guest policy DEBUG (and SMT, MIGRATE_MA) as the policy allows
//   7. measurement MEASUREMENT, HOST_DATA, ID_KEY_DIGEST, AUTHOR_KEY_DIGEST in the policy's lists
//   8. report_data REPORT_DATA = expectedReportData (attestation.ts passes the document's reportData)
//
// Design: a separate module, loaded with import() only when a document names a hardware provider,
// and a separate file of the browser build (dist/chat/hardware.js): X.509 comes from PKI.js +
// asn1js (maintained, on WebCrypto, no hand-written DER or RSA-PSS), ~200 KiB minified that a
// simulated or no-attestation page never downloads. The report itself is fixed offsets (no ASN.1);
// every signature is WebCrypto's (ECDSA P-384 for the report, RSA-PSS through PKI.js for the chain).
// No libsodium here: the module (with tdx.ts and pki.ts) stands alone in the browser bundle.
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { PINNED_AMD_ARKS } from './hardware_roots.js';
import { verifyTdx, type TdxPolicy, type TdxVerified } from './tdx.js';
import {
  commonName, crlSignedBy, derValue, extension, fail, lists, notAfterSeconds, parseCrl, parseDer, parsePem, sameName, serialHex,
  signedBy, toHex, validAt,
} from './pki.js';

export { HardwareFailure } from './pki.js';
export type { TdxPolicy, TdxVerified } from './tdx.js';
export type { Check } from './pki.js';


// --- policy (docs/attestation.md "The policy file"; C++ attestation::parse_policy) -----------

export interface HardwarePolicy {
  providers: string[];
  allowDebug: boolean;
  tdx: TdxPolicy;
  sevSnp: {
    measurement: Uint8Array[]; hostData: Uint8Array[]; idKeyDigest: Uint8Array[]; authorKeyDigest: Uint8Array[];
    minTcb: Uint8Array | null;  // the 8 reported-TCB bytes in report order
    allowSmt: boolean; allowMigrationAgent: boolean;
  };
}

const MAX_POLICY_VALUES = 64;
const TOP_KEYS = ['providers', 'allowDebug', 'tdx', 'sevSnp'];
const TDX_KEYS = ['mrtd', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3', 'mrseam', 'xfam', 'minTcbStatus'];
const SNP_KEYS = ['measurement', 'hostData', 'idKeyDigest', 'authorKeyDigest', 'minTcb', 'allowSmt', 'allowMigrationAgent'];
const TDX_STATUSES = ['UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded', 'ConfigurationAndSWHardeningNeeded',
  'OutOfDate', 'OutOfDateConfigurationNeeded'];

const bad = (where: string, what: string): never => fail('malformed', `attestation policy: ${where} ${what}`);

function objectWithKeys(value: unknown, where: string, known: string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad(where, 'must be a JSON object');
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) bad(where, `has an unknown key "${key.slice(0, 64)}" (known: ${known.join(', ')})`);
  }
  return value as Record<string, unknown>;
}

function boolean(obj: Record<string, unknown>, key: string, where: string, fallback: boolean): boolean {
  if (obj[key] === undefined) return fallback;
  if (typeof obj[key] !== 'boolean') bad(where + key, 'must be true or false');
  return obj[key] as boolean;
}

/** Strict hex (either case) of exactly `bytes` bytes, or null. Public values only (not constant-time). */
function hexBytes(text: unknown, bytes: number): Uint8Array | null {
  if (typeof text !== 'string' || text.length !== 2 * bytes || !/^[0-9a-fA-F]*$/.test(text)) return null;
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 1) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function hexList(obj: Record<string, unknown>, key: string, where: string, bytes: number): Uint8Array[] {
  const value = obj[key];
  if (value === undefined) return [];
  const name = where + key;
  if (!Array.isArray(value) || value.length > MAX_POLICY_VALUES) bad(name, `must be a list of at most ${MAX_POLICY_VALUES} hex strings`);
  return (value as unknown[]).map((item) => hexBytes(item, bytes)
    ?? bad(name, `values must be ${bytes} bytes (${2 * bytes} hex digits)`));
}

function providers(obj: Record<string, unknown>): string[] {
  const value = obj.providers;
  if (value === undefined) return ['tdx', 'sev-snp'];
  if (!Array.isArray(value) || value.length === 0) bad('providers', 'must be a non-empty list of "tdx" and/or "sev-snp"');
  const list = value as unknown[];
  if (!list.every((p) => p === 'tdx' || p === 'sev-snp')) {
    bad('providers', 'may only list "tdx" and "sev-snp" ("simulated" is trusted by platformPublicKey, never by a policy)');
  }
  if (new Set(list).size !== list.length) bad('providers', 'lists a provider twice');
  return list as string[];
}

/** The tdx section (C++ tdx_section): 48-byte registers, 8-byte XFAM, a known minimum status. */
function tdxSection(value: unknown): TdxPolicy {
  const obj = value === undefined ? {} : objectWithKeys(value, 'tdx', TDX_KEYS);
  const list = (key: string, bytes = 48) => hexList(obj, key, 'tdx.', bytes);
  if (obj.minTcbStatus !== undefined && !TDX_STATUSES.includes(obj.minTcbStatus as string)) {
    bad('tdx.minTcbStatus', `must be one of ${TDX_STATUSES.join(', ')}`);
  }
  return {
    mrtd: list('mrtd'), rtmr0: list('rtmr0'), rtmr1: list('rtmr1'), rtmr2: list('rtmr2'), rtmr3: list('rtmr3'),
    mrseam: list('mrseam'), xfam: list('xfam', 8), minTcbStatus: (obj.minTcbStatus as string | undefined) ?? 'UpToDate',
  };
}

/**
 * The policy (the C++ policy file's JSON: text or the parsed value; absent: the defaults). Throws
 * HardwareFailure(malformed) naming the key for unknown keys, wrong lengths, non-hex, wrong types.
 */
export function parseHardwarePolicy(input: unknown): HardwarePolicy {
  let value = input ?? {};
  if (typeof value === 'string') {
    if (value.length > 64 * 1024) bad('file', 'is larger than 65536 bytes');
    try {
      value = JSON.parse(value);
    } catch {
      bad('file', 'is not JSON');
    }
  }
  const top = objectWithKeys(value, 'policy', TOP_KEYS);
  const tdx = tdxSection(top.tdx);
  const snp = top.sevSnp === undefined ? {} : objectWithKeys(top.sevSnp, 'sevSnp', SNP_KEYS);
  const minTcb = snp.minTcb === undefined ? null
    : hexBytes(snp.minTcb, 8) ?? bad('sevSnp.minTcb', 'must be the 8-byte reported TCB as 16 hex digits (e.g. 0300000000000873)');
  return {
    providers: providers(top),
    allowDebug: boolean(top, 'allowDebug', '', false),
    tdx,
    sevSnp: {
      measurement: hexList(snp, 'measurement', 'sevSnp.', 48),
      hostData: hexList(snp, 'hostData', 'sevSnp.', 32),
      idKeyDigest: hexList(snp, 'idKeyDigest', 'sevSnp.', 48),
      authorKeyDigest: hexList(snp, 'authorKeyDigest', 'sevSnp.', 48),
      minTcb,
      allowSmt: boolean(snp, 'allowSmt', 'sevSnp.', true),
      allowMigrationAgent: boolean(snp, 'allowMigrationAgent', 'sevSnp.', false),
    },
  };
}

// --- the report (ABI spec 56860, "ATTESTATION_REPORT") ---------------------------------------

export const SNP_REPORT_BYTES = 1184;
const SIGNED_BYTES = 0x2a0;
const SCALAR_BYTES = 72;
const P384_SCALAR_BYTES = 48;
const POLICY_SMT = 1n << 16n;
const POLICY_MIGRATION_AGENT = 1n << 18n;
const POLICY_DEBUG = 1n << 19n;

type Product = 'Milan' | 'Genoa' | 'Turin';

export interface SnpReport {
  version: number; guestSvn: number; policy: bigint; vmpl: number; signatureAlgo: number;
  maskChipKey: boolean; signingKey: number;
  reportData: Uint8Array; measurement: Uint8Array; hostData: Uint8Array; idKeyDigest: Uint8Array;
  authorKeyDigest: Uint8Array; reportedTcb: Uint8Array; chipId: Uint8Array;
  cpuidFamily: number | null; cpuidModel: number | null;
  signatureR: Uint8Array; signatureS: Uint8Array;
}

/** Exactly 1184 bytes of version 2, 3 or 5; malformed otherwise (the signature is not checked). */
export function parseSnpReport(bytes: Uint8Array): SnpReport {
  if (bytes.length !== SNP_REPORT_BYTES) fail('malformed', `the SEV-SNP report has ${bytes.length} bytes (expected ${SNP_REPORT_BYTES})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (at: number) => view.getUint32(at, true);
  const at = (offset: number, length: number) => bytes.slice(offset, offset + length);
  const version = u32(0);
  if (version !== 2 && version !== 3 && version !== 5) fail('malformed', `SEV-SNP report version ${version} is not supported (2, 3 or 5)`);
  const flags = u32(0x48);
  return {
    version, guestSvn: u32(0x04), policy: view.getBigUint64(0x08, true), vmpl: u32(0x30), signatureAlgo: u32(0x34),
    maskChipKey: (flags & 2) !== 0, signingKey: (flags >>> 2) & 7,
    reportData: at(0x50, 64), measurement: at(0x90, 48), hostData: at(0xc0, 32), idKeyDigest: at(0xe0, 48),
    authorKeyDigest: at(0x110, 48), reportedTcb: at(0x180, 8), chipId: at(0x1a0, 64),
    cpuidFamily: version >= 3 ? bytes[0x188] : null, cpuidModel: version >= 3 ? bytes[0x189] : null,
    signatureR: at(0x2a0, SCALAR_BYTES), signatureS: at(0x2e8, SCALAR_BYTES),
  };
}

function productFromName(name: string | undefined): Product | null {
  const base = name?.startsWith('ARK-') ? name.slice(4) : name;
  for (const product of ['Milan', 'Genoa', 'Turin'] as const) {
    if (base === product || base?.startsWith(`${product}-`)) return product;
  }
  return null;
}

function cpuidProduct(report: SnpReport): Product | null {
  if (report.cpuidFamily === null || report.cpuidModel === null) return null;
  if (report.cpuidFamily === 0x1a) return 'Turin';
  if (report.cpuidFamily === 0x19) return report.cpuidModel < 0x10 ? 'Milan' : 'Genoa';
  return null;
}

interface Tcb { fmc: number | null; bootloader: number; tee: number; snp: number; microcode: number }

/** The 8 TCB bytes per product: Milan/Genoa [bl, tee, 0, 0, 0, 0, snp, ucode], Turin [fmc, bl, tee, snp, 0, 0, 0, ucode]. */
function decodeTcb(raw: Uint8Array, product: Product): Tcb {
  return product === 'Turin'
    ? { fmc: raw[0], bootloader: raw[1], tee: raw[2], snp: raw[3], microcode: raw[7] }
    : { fmc: null, bootloader: raw[0], tee: raw[1], snp: raw[6], microcode: raw[7] };
}

const describeTcb = (t: Tcb) => `${t.fmc === null ? '' : `fmc ${t.fmc}, `}bootloader ${t.bootloader}, tee ${t.tee}, snp ${t.snp}, microcode ${t.microcode}`;
const tcbAtLeast = (t: Tcb, min: Tcb) => (t.fmc ?? 0) >= (min.fmc ?? 0) && t.bootloader >= min.bootloader
  && t.tee >= min.tee && t.snp >= min.snp && t.microcode >= min.microcode;

// --- certificates (PKI.js) -------------------------------------------------------------------

const OID_PRODUCT_NAME = '1.3.6.1.4.1.3704.1.2';
const OID_TCB: [string, keyof Tcb, string][] = [
  ['1.3.6.1.4.1.3704.1.3.1', 'bootloader', 'blSPL'], ['1.3.6.1.4.1.3704.1.3.2', 'tee', 'teeSPL'],
  ['1.3.6.1.4.1.3704.1.3.3', 'snp', 'snpSPL'], ['1.3.6.1.4.1.3704.1.3.8', 'microcode', 'ucodeSPL'],
];
const OID_FMC_SPL = '1.3.6.1.4.1.3704.1.3.9';
const OID_HWID = '1.3.6.1.4.1.3704.1.4';
const OID_SECP384R1 = '1.3.132.0.34';

interface Keychain { name: 'VCEK' | 'VLEK'; leaf: pkijs.Certificate; product: Product; validUntil: number }

/** leaf → intermediate (ASK/ASVK from ask_ark.pem) → one of `anchors`, every certificate valid at `at`. */
async function verifyChain(leaf: pkijs.Certificate, intermediates: pkijs.Certificate[], anchors: pkijs.Certificate[],
                           at: Date, what: string): Promise<pkijs.Certificate[]> {
  const ask = intermediates.find((c) => sameName(c.subject, leaf.issuer));
  if (!ask) return fail('cert_chain', `${what}: ask_ark.pem holds no certificate named as the leaf's issuer`);
  if (!(await signedBy(leaf, ask))) fail('cert_chain', `${what}: the leaf's signature does not verify with the ASK/ASVK`);
  const arks = anchors.filter((a) => sameName(a.subject, ask.issuer));
  let ark: pkijs.Certificate | undefined;
  for (const candidate of arks) if (await signedBy(ask, candidate)) ark = candidate;
  if (!ark) return fail('cert_chain', `${what}: the ASK/ASVK is not signed by a pinned ARK (another vendor's or a test root)`);
  const caOk = [ask, ark].every((c) => c.extensions?.some((e) => e.extnID === '2.5.29.19'
    && (e.parsedValue as pkijs.BasicConstraints | undefined)?.cA === true));
  if (!caOk) fail('cert_chain', `${what}: the ASK/ARK is not a CA certificate`);
  for (const [cert, label] of [[leaf, 'leaf'], [ask, 'ASK/ASVK'], [ark, 'ARK']] as const) {
    if (!validAt(cert, at)) {
      fail('expired', `${what}: the ${label} certificate is not valid at ${at.toISOString()} (valid ${cert.notBefore.value.toISOString()} … ${cert.notAfter.value.toISOString()})`);
    }
  }
  return [leaf, ask, ark];
}

/**
 * crl.der (AMD KDS /vcek/v1/{product}/crl, optional, as in the C++ verifier): signed by the chain's
 * certificate that issued it, current at `at`, listing none of the certificates that one issued.
 * Returns the CRL's nextUpdate (Unix seconds), or Infinity without a CRL.
 */
async function checkCrl(crl: pkijs.CertificateRevocationList | null, chain: pkijs.Certificate[], at: Date, what: string): Promise<number> {
  if (!crl) return Infinity;
  const issuer = chain.find((c) => sameName(c.subject, crl.issuer));
  if (!issuer) return fail('crl', `${what}: crl.der is issued by none of the chain's certificates`);
  if (!(await crlSignedBy(crl, issuer))) fail('crl', `${what}: crl.der's signature does not verify with its issuer`);
  const nextUpdate = crl.nextUpdate?.value;
  if (crl.thisUpdate.value > at || !nextUpdate || nextUpdate < at) fail('expired', `${what}: crl.der is not current at ${at.toISOString()}`);
  for (const cert of chain) {
    if (!sameName(cert.issuer, crl.issuer) || cert === issuer) continue;
    const serial = serialHex(cert);
    if (lists(crl, serial)) fail('crl', `${what}: the certificate with serial ${serial} is revoked by crl.der`);
  }
  return Math.floor(nextUpdate!.getTime() / 1000);
}

function chainProduct(name: string, leaf: pkijs.Certificate, ark: pkijs.Certificate, report: SnpReport): Product {
  let byLeaf: Product | null = null;
  const ext = extension(leaf, OID_PRODUCT_NAME);
  if (ext) {
    const value = derValue(ext);
    byLeaf = value instanceof asn1js.IA5String ? productFromName(value.valueBlock.value) : null;
    if (!byLeaf) fail('malformed', `${name} productName is not Milan, Genoa or Turin`);
  }
  const byArk = productFromName(commonName(ark));
  if (!byLeaf && !byArk) fail('cert_chain', `neither the ${name} nor the ARK names a product`);
  const product = (byLeaf ?? byArk) as Product;
  if (byArk && byArk !== product) fail('cert_chain', `${name} of ${product} chains to an ARK of ${byArk}`);
  const byCpu = cpuidProduct(report);
  if (byCpu && byCpu !== product) fail('cert_chain', `the report's CPU is a ${byCpu}, the ${name} is of ${product}`);
  return product;
}

async function verifyKeychain(report: SnpReport, collateral: Record<string, Uint8Array>, anchors: pkijs.Certificate[],
                              at: Date): Promise<Keychain> {
  if (report.maskChipKey || report.signingKey === 7) fail('signature', 'the SEV-SNP report is not signed (MASK_CHIP_KEY or no signing key)');
  if (report.signingKey > 1) fail('malformed', `unknown SIGNING_KEY ${report.signingKey}`);
  const name = report.signingKey === 0 ? 'VCEK' : 'VLEK';
  const file = report.signingKey === 0 ? 'vcek.der' : 'vlek.der';
  if (!collateral[file]) fail('malformed', `collateral ${file} is missing`);
  const leaf = parseDer(collateral[file], file);
  if (!collateral['ask_ark.pem']) fail('malformed', 'collateral ask_ark.pem (ASK/ASVK and ARK) is missing');
  const intermediates = parsePem(new TextDecoder().decode(collateral['ask_ark.pem']), 'ask_ark.pem');
  const crl = collateral['crl.der'] ? parseCrl(collateral['crl.der'], 'crl.der') : null;  // every file parsed before any signature, as in C++
  const chain = await verifyChain(leaf, intermediates, anchors, at, `${name} chain`);
  const crlEnd = await checkCrl(crl, chain, at, `${name} chain`);
  const product = chainProduct(name, leaf, chain[2], report);
  const validUntil = Math.min(crlEnd, ...chain.map(notAfterSeconds));
  return { name, leaf, product, validUntil };
}

/** ECDSA P-384 / SHA-384 over bytes 0..0x29F; r and s are 72-byte little-endian, zero-padded. */
async function verifyReportSignature(evidence: Uint8Array, report: SnpReport, keys: Keychain): Promise<void> {
  if (report.signatureAlgo !== 1) fail('signature', `unsupported SIGNATURE_ALGO ${report.signatureAlgo} (expected 1, ECDSA P-384 with SHA-384)`);
  const spki = keys.leaf.subjectPublicKeyInfo;
  const curve = (spki.algorithm.algorithmParams as asn1js.ObjectIdentifier | undefined)?.valueBlock?.toString();
  if (spki.algorithm.algorithmId !== '1.2.840.10045.2.1' || curve !== OID_SECP384R1) fail('signature', `the ${keys.name} key is not ECDSA P-384`);
  const signature = new Uint8Array(2 * P384_SCALAR_BYTES);
  for (const [scalar, offset] of [[report.signatureR, 0], [report.signatureS, P384_SCALAR_BYTES]] as const) {
    if (scalar.subarray(P384_SCALAR_BYTES).some((b) => b !== 0)) fail('signature', 'a signature scalar is longer than 48 bytes');
    signature.set(scalar.slice(0, P384_SCALAR_BYTES).reverse(), offset);
  }
  const subtle = globalThis.crypto.subtle;
  let ok = false;
  try {
    const key = await subtle.importKey('spki', spki.toSchema().toBER(false), { name: 'ECDSA', namedCurve: 'P-384' }, false, ['verify']);
    ok = await subtle.verify({ name: "ECDSA", hash: "SHA-384" }, key, signature, evidence.slice(0, SIGNED_BYTES));
  } catch (error) {
    fail('signature', `the ${keys.name} key cannot verify (${String((error as Error).message ?? error).slice(0, 120)})`);
  }
  if (!ok) fail('signature', `the SEV-SNP report's signature does not verify with the ${keys.name}`);
}

function verifyChipId(report: SnpReport, keys: Keychain): void {
  if (keys.name !== 'VCEK') return;
  const size = keys.product === 'Turin' ? 8 : 64;
  const hwid = extension(keys.leaf, OID_HWID);
  if (!hwid || hwid.length !== size) fail('malformed', `the VCEK has no ${size}-byte hwID extension`);
  const same = hwid!.every((b, i) => b === report.chipId[i]) && report.chipId.subarray(size).every((b) => b === 0);
  if (!same) fail('cert_chain', `the VCEK is another chip's: its hwID is not the report's CHIP_ID ${toHex(report.chipId.subarray(0, size))}`);
}

function certificateTcb(keys: Keychain): Tcb {
  const tcb: Tcb = { fmc: null, bootloader: 0, tee: 0, snp: 0, microcode: 0 };
  const parts = keys.product === 'Turin' ? [...OID_TCB, [OID_FMC_SPL, 'fmc', 'fmcSPL'] as [string, keyof Tcb, string]] : OID_TCB;
  for (const [oid, field, label] of parts) {
    const ext = extension(keys.leaf, oid);
    const value = ext ? derValue(ext) : null;
    const number = value instanceof asn1js.Integer ? value.valueBlock.valueDec : -1;
    if (!(number >= 0 && number <= 0xff)) fail('malformed', `the ${keys.name} has no valid ${label} extension`);
    tcb[field] = number;
  }
  return tcb;
}

function verifyTcb(report: SnpReport, keys: Keychain, policy: HardwarePolicy): void {
  const certified = certificateTcb(keys);
  const reported = decodeTcb(report.reportedTcb, keys.product);
  if (describeTcb(reported) !== describeTcb(certified)) {
    fail('tcb_status', `REPORTED_TCB (${describeTcb(reported)}) is not the ${keys.name}'s TCB (${describeTcb(certified)})`);
  }
  if (policy.sevSnp.minTcb) {
    const minimum = decodeTcb(policy.sevSnp.minTcb, keys.product);
    if (!tcbAtLeast(reported, minimum)) {
      fail('tcb_status', `REPORTED_TCB (${describeTcb(reported)}) is below the policy's minimum (${describeTcb(minimum)})`);
    }
  }
}

function verifyGuestPolicy(report: SnpReport, policy: HardwarePolicy): void {
  if ((report.policy & POLICY_DEBUG) !== 0n && !policy.allowDebug) {
    fail('debug', 'the guest policy allows debugging (POLICY bit 19) and the policy does not allow debug');
  }
  if ((report.policy & POLICY_MIGRATION_AGENT) !== 0n && !policy.sevSnp.allowMigrationAgent) {
    fail('debug', 'the guest policy allows a migration agent (POLICY bit 18) and the policy does not');
  }
  if ((report.policy & POLICY_SMT) !== 0n && !policy.sevSnp.allowSmt) {
    fail('debug', 'the guest policy allows SMT (POLICY bit 16) and the policy does not');
  }
}

function verifyMeasurements(report: SnpReport, policy: HardwarePolicy): void {
  const lists: [Uint8Array[], Uint8Array, string][] = [
    [policy.sevSnp.measurement, report.measurement, 'MEASUREMENT'], [policy.sevSnp.hostData, report.hostData, 'HOST_DATA'],
    [policy.sevSnp.idKeyDigest, report.idKeyDigest, 'ID_KEY_DIGEST'],
    [policy.sevSnp.authorKeyDigest, report.authorKeyDigest, 'AUTHOR_KEY_DIGEST'],
  ];
  for (const [accepted, value, field] of lists) {
    if (accepted.length > 0 && !accepted.some((a) => toHex(a) === toHex(value))) {
      fail('measurement', `${field} ${toHex(value)} is none of the policy's ${accepted.length} accepted values`);
    }
  }
}

export interface SnpVerified {
  provider: 'sev-snp';
  measurement: Uint8Array;
  reportData: Uint8Array;
  debug: boolean;
  product: Product;
  /** The earliest notAfter of the chain's certificates (Unix seconds). */
  validUntil: number;
}

export interface VerifyEvidenceInput {
  provider: string;
  evidence: Uint8Array;
  collateral: Record<string, Uint8Array>;
  policy: HardwarePolicy;
  /** Unix seconds. */
  at: number;
  /** PEM trust anchors instead of the pinned vendor roots (tests only; the client never sets it). */
  trustAnchorsPem?: string;
  /** When given, REPORT_DATA must equal it (report_data, after every other check). */
  expectedReportData?: Uint8Array;
}

/** Verifies hardware evidence; throws HardwareFailure naming the first check that failed. */
export async function verifyEvidence(input: VerifyEvidenceInput): Promise<SnpVerified | TdxVerified> {
  if (!input.policy.providers.includes(input.provider)) fail('measurement', `provider ${input.provider} is not listed in the policy's providers`);
  if (input.provider === 'tdx') {
    return verifyTdx({
      quote: input.evidence, collateral: input.collateral, policy: input.policy.tdx, allowDebug: input.policy.allowDebug,
      at: input.at, trustAnchorsPem: input.trustAnchorsPem, expectedReportData: input.expectedReportData,
    });
  }
  if (input.provider !== 'sev-snp') fail('malformed', `unknown hardware provider ${input.provider.slice(0, 40)}`);
  const report = parseSnpReport(input.evidence);
  const anchors = input.trustAnchorsPem !== undefined ? parsePem(input.trustAnchorsPem, 'trust anchors')
    : PINNED_AMD_ARKS.flatMap((pem) => parsePem(pem, 'pinned ARK'));
  const keys = await verifyKeychain(report, input.collateral, anchors, new Date(input.at * 1000));
  await verifyReportSignature(input.evidence, report, keys);
  verifyChipId(report, keys);
  verifyTcb(report, keys, input.policy);
  verifyGuestPolicy(report, input.policy);
  verifyMeasurements(report, input.policy);
  const expected = input.expectedReportData;
  if (expected && !(expected.length === report.reportData.length && expected.every((b, i) => b === report.reportData[i]))) {
    fail('report_data', 'REPORT_DATA is not the document\'s reportData');
  }
  return {
    provider: 'sev-snp', measurement: report.measurement, reportData: report.reportData,
    debug: (report.policy & POLICY_DEBUG) !== 0n, product: keys.product, validUntil: keys.validUntil,
  };
}
