// The Intel TDX verifier of the TypeScript SDK: a port of the C++ verifier (src/attestation/tdx.cpp,
// tdx_quote.cpp, tdx_pck.cpp, tdx_collateral.cpp) with its checks, order, names and messages, run
// on the same fixtures (shared/attestation/tdx/). In Intel QVL's order, the first failure thrown as
// HardwareFailure naming its check:
//   1. malformed   the quote (v4/v5, ECDSA P-256 key, TEE type 0x81, certification data 6 → 5),
//                  pckcrl.der and rootcrl.der (required), the collateral files as they are read
//   2. cert_chain / crl / expired
//                  the quote's PCK certificate → PCK CA → the pinned Intel SGX Root CA, valid at
//                  `at`, every certificate under a CRL of its issuer (pckcrl.der, rootcrl.der) that
//                  its issuer signed, current at `at` and not listing it
//   3. signature   the QE report by the PCK key, QE report data = SHA-256(attestation key ‖ QE
//                  authentication data) ‖ zeros, the quote (header ‖ body) by the attestation key:
//                  ECDSA P-256 / SHA-256 with WebCrypto
//   4. malformed   the PCK certificate's SGX extensions (FMSPC, PCE-ID, TCB), read with asn1js
//   5. tcbinfo.json, then qeidentity.json: the signing certificate of *_issuer_chain.pem → the root
//                  (cert_chain / crl with rootcrl.der / expired), the ECDSA signature over the raw
//                  bytes of the signed member as they stand in the file (signature), issueDate ≤ at
//                  < nextUpdate (expired)
//   6. tcb_status  FMSPC and PCE-ID are the PCK's; the first TCB level the platform meets (and the
//                  TDX module identity), its status at least policy.tdx.minTcbStatus, never Revoked
//   7. qe_identity the QE's MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES under their masks, its
//                  ISVSVN level neither Revoked nor OutOfDate
//   8. debug       TD_ATTRIBUTES.TUD.DEBUG unless allowDebug
//   9. measurement MRTD, RTMR0..3, MRSEAM, XFAM in the policy's lists
// report_data (REPORTDATA = the document's binding) is checked by attestation.ts after these.
//
// Design: the quote is read at fixed offsets (Intel TDX DCAP Quoting Library API, "Quote Format")
// by a bounds-checked cursor; certificates, CRLs and the PCK extensions go through PKI.js/asn1js;
// the collateral JSON is parsed with JSON.parse for its values and walked byte by byte only to find
// the signed member's exact bytes (Intel signs those; nothing is re-serialised; a member given
// twice is malformed, since which one was signed would be ambiguous).
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { PINNED_INTEL_ROOT } from './hardware_roots.js';
import {
  crlSignedBy, derValue, extension, fail, isCa, keyUsageBit, lists, notAfterSeconds, parseCrl, parseDer, parsePem, sameName,
  serialHex, shownName, signedBy, toHex, validAt, verifyEcdsa,
} from './pki.js';

export interface TdxPolicy {
  mrtd: Uint8Array[]; rtmr0: Uint8Array[]; rtmr1: Uint8Array[]; rtmr2: Uint8Array[]; rtmr3: Uint8Array[];
  mrseam: Uint8Array[]; xfam: Uint8Array[];
  /** The lowest TCB Info status accepted (default "UpToDate"; "Revoked" never). */
  minTcbStatus: string;
}

export interface TdxVerified {
  provider: 'tdx';
  /** MRTD. */
  measurement: Uint8Array;
  reportData: Uint8Array;
  debug: boolean;
  /** The status of the matched TCB level ("UpToDate", …). */
  tcbStatus: string;
  /** The earliest end of what was verified (certificates, CRLs, TCB Info, QE Identity), Unix seconds. */
  validUntil: number;
  /** rtmr0..3, mrseam, xfam, td_attributes, fmspc, tee_tcb_svn, quote_version as lowercase hex / text. */
  fields: Record<string, string>;
}

// --- the quote --------------------------------------------------------------------------------

export const HEADER_BYTES = 48;
export const TD_REPORT10_BYTES = 584;
export const TD_REPORT15_BYTES = 648;
export const QE_REPORT_BYTES = 384;
export const BODY_MRTD_OFFSET = 136;

export interface TdReport {
  teeTcbSvn: Uint8Array; mrseam: Uint8Array; mrsignerseam: Uint8Array; seamAttributes: Uint8Array;
  tdAttributes: Uint8Array; xfam: Uint8Array; mrtd: Uint8Array; rtmr: Uint8Array[]; reportData: Uint8Array;
}

export interface QeReport {
  miscselect: number; attributes: Uint8Array; mrsigner: Uint8Array; isvProdId: number; isvSvn: number; reportData: Uint8Array;
}

export interface Quote {
  version: number;
  bodyType: number;
  signedBytes: Uint8Array;
  body: TdReport;
  signature: Uint8Array;
  attestationKey: Uint8Array;
  qeReportBytes: Uint8Array;
  qeReport: QeReport;
  qeReportSignature: Uint8Array;
  qeAuthData: Uint8Array;
  pckChain: Uint8Array;
}

const badQuote = (what: string): never => fail('malformed', `TDX quote: ${what}`);

/** A bounds-checked little-endian cursor; null from a read past the end. */
class Cursor {
  offset = 0;
  constructor(readonly bytes: Uint8Array) {}
  take(n: number): Uint8Array | null {
    if (n > this.bytes.length - this.offset) return null;
    this.offset += n;
    return this.bytes.subarray(this.offset - n, this.offset);
  }
  u16(): number | null {
    const b = this.take(2);
    return b && b[0] | (b[1] << 8);
  }
  u32(): number | null {
    const b = this.take(4);
    return b && (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }
  get remaining(): number {
    return this.bytes.length - this.offset;
  }
}

function readBody(raw: Uint8Array): TdReport {
  const at = (offset: number, n: number) => raw.slice(offset, offset + n);
  return {
    teeTcbSvn: at(0, 16), mrseam: at(16, 48), mrsignerseam: at(64, 48), seamAttributes: at(112, 8), tdAttributes: at(120, 8),
    xfam: at(128, 8), mrtd: at(BODY_MRTD_OFFSET, 48), rtmr: [0, 1, 2, 3].map((i) => at(328 + 48 * i, 48)), reportData: at(520, 64),
  };
}

function readQeReport(raw: Uint8Array): QeReport {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return {
    miscselect: view.getUint32(16, true), attributes: raw.slice(48, 64), mrsigner: raw.slice(128, 160),
    isvProdId: view.getUint16(256, true), isvSvn: view.getUint16(258, true), reportData: raw.slice(320, 384),
  };
}

function readHeaderAndBody(c: Cursor): Pick<Quote, 'version' | 'bodyType' | 'signedBytes' | 'body'> {
  const version = c.u16();
  const keyType = c.u16();
  const teeType = c.u32();
  if (version === null || keyType === null || teeType === null || !c.take(HEADER_BYTES - 8)) {
    return badQuote(`shorter than its 48-byte header (${c.bytes.length} bytes)`);
  }
  if (version !== 4 && version !== 5) badQuote(`version ${version} (4 or 5 expected)`);
  if (keyType !== 2) badQuote(`attestation key type ${keyType} (2, ECDSA P-256, expected)`);
  if (teeType !== 0x81) badQuote(`TEE type ${teeType} (0x81, TDX, expected)`);
  let bodyType = 2;
  let bodySize = TD_REPORT10_BYTES;
  if (version === 5) {
    const type = c.u16();
    const size = c.u32();
    if (type === null || size === null) badQuote('truncated v5 body descriptor');
    if (type !== 2 && type !== 3) badQuote(`v5 body type ${type} (2 or 3, a TD report, expected)`);
    bodyType = type!;
    bodySize = bodyType === 2 ? TD_REPORT10_BYTES : TD_REPORT15_BYTES;
    if (size !== bodySize) badQuote(`v5 body size ${size} does not match its type`);
  }
  const body = c.take(bodySize) ?? badQuote('truncated TD report body');
  return { version, bodyType, signedBytes: c.bytes.slice(0, c.offset), body: readBody(body) };
}

function readQeCertification(c: Cursor): Pick<Quote, 'qeReportBytes' | 'qeReport' | 'qeReportSignature' | 'qeAuthData' | 'pckChain'> {
  const qeReportBytes = c.take(QE_REPORT_BYTES) ?? badQuote('truncated QE report');
  const qeReportSignature = c.take(64);
  const authSize = c.u16();
  const qeAuthData = authSize === null ? null : c.take(authSize);
  if (!qeReportSignature || !qeAuthData) badQuote('truncated QE report signature or QE authentication data');
  const type = c.u16();
  const size = c.u32();
  if (type === null || size === null) badQuote('truncated PCK certification data header');
  if (type !== 5) badQuote(`QE certification data type ${type} (5, PCK chain, expected)`);
  const pckChain = c.take(size!);
  if (!pckChain || size === 0) badQuote(`PCK chain size ${size} out of bounds`);
  if (c.remaining !== 0) badQuote('bytes after the PCK chain inside the certification data');
  return {
    qeReportBytes: qeReportBytes.slice(), qeReport: readQeReport(qeReportBytes), qeReportSignature: qeReportSignature!.slice(),
    qeAuthData: qeAuthData!.slice(), pckChain: pckChain!.slice(),
  };
}

/** Malformed (naming the field) on a wrong version, key type, TEE type, body type, size or certification data type. */
export function parseQuote(bytes: Uint8Array): Quote {
  const c = new Cursor(bytes);
  const head = readHeaderAndBody(c);
  const sigSize = c.u32();
  const sigData = sigSize === null ? null : c.take(sigSize);
  if (!sigData) return badQuote(`signature data size ${sigSize ?? 0} exceeds the quote`);
  const s = new Cursor(sigData);
  const signature = s.take(64);
  const attestationKey = s.take(64);
  const certType = s.u16();
  const certSize = s.u32();
  if (!signature || !attestationKey || certType === null || certSize === null) badQuote('truncated signature data');
  if (certType !== 6) badQuote(`certification data type ${certType} (6, QE report, expected)`);
  const certData = s.take(certSize!);
  if (!certData || s.remaining !== 0) badQuote(`certification data size ${certSize} does not match the signature data`);
  return { ...head, signature: signature!.slice(), attestationKey: attestationKey!.slice(), ...readQeCertification(new Cursor(certData!)) };
}

// --- the PCK certificate's SGX extensions (1.2.840.113741.1.13.1) -----------------------------

const SGX_OID = '1.2.840.113741.1.13.1';

export interface PckExtensions { cpuSvnComponents: Uint8Array; pceSvn: number; cpuSvn: Uint8Array; pceId: Uint8Array; fmspc: Uint8Array }

/** {OID, value} → [dotted OID, value], or null when it is not such a pair. */
function oidPair(value: asn1js.AsnType | undefined): [string, asn1js.AsnType] | null {
  if (!(value instanceof asn1js.Sequence) || value.valueBlock.value.length !== 2) return null;
  const [oid, v] = value.valueBlock.value;
  return oid instanceof asn1js.ObjectIdentifier ? [oid.valueBlock.toString(), v] : null;
}

function octets(value: asn1js.AsnType, n: number): Uint8Array | null {
  if (!(value instanceof asn1js.OctetString) || value.valueBlock.isConstructed) return null;
  const bytes = new Uint8Array(value.valueBlock.valueHexView);
  return bytes.length === n ? bytes : null;
}

function smallUint(value: asn1js.AsnType, max: number): number | null {
  if (!(value instanceof asn1js.Integer) || value.valueBlock.valueHexView.length > 3) return null;
  const n = value.valueBlock.valueDec;
  return n >= 0 && n <= max ? n : null;
}

/** The TCB sequence: 16 component SVNs (.2.1 … .2.16), PCESVN (.2.17), CPUSVN (.2.18); all required. */
function parseTcb(value: asn1js.AsnType, out: PckExtensions): boolean {
  if (!(value instanceof asn1js.Sequence)) return false;
  let seen = 0;
  const prefix = `${SGX_OID}.2.`;
  for (const item of value.valueBlock.value) {
    const pair = oidPair(item);
    if (!pair || !pair[0].startsWith(prefix)) continue;
    const index = Number(pair[0].slice(prefix.length));
    if (index === 18) {
      const svn = octets(pair[1], 16);
      if (!svn) return false;
      out.cpuSvn = svn;
    } else if (index === 17) {
      const pceSvn = smallUint(pair[1], 0xffff);
      if (pceSvn === null) return false;
      out.pceSvn = pceSvn;
    } else {
      const svn = smallUint(pair[1], 0xff);
      if (!(index >= 1 && index <= 16) || svn === null) return false;
      out.cpuSvnComponents[index - 1] = svn;
    }
    seen |= 1 << index;
  }
  return seen === 0x7fffe;  // bits 1..18
}

/** From the DER of the extension's value; malformed when a field is absent or out of range. */
export function parsePckExtensions(der: Uint8Array | null): PckExtensions {
  const bad = (what: string): never => fail('malformed', `PCK certificate SGX extensions: ${what}`);
  if (!der || der.length === 0 || der.length > 4096) return bad('absent or oversized');
  const top = derValue(der);
  if (!(top instanceof asn1js.Sequence)) return bad('not a DER sequence');
  const out: PckExtensions = { cpuSvnComponents: new Uint8Array(16), pceSvn: 0, cpuSvn: new Uint8Array(16), pceId: new Uint8Array(2), fmspc: new Uint8Array(6) };
  let tcb = false;
  let pceId: Uint8Array | null = null;
  let fmspc: Uint8Array | null = null;
  for (const item of top.valueBlock.value) {
    const pair = oidPair(item) ?? bad('an entry is not an {OID, value} pair');
    if (pair[0] === `${SGX_OID}.2`) {
      tcb = parseTcb(pair[1], out) || bad('the TCB entry is incomplete or out of range');
    } else if (pair[0] === `${SGX_OID}.3`) {
      pceId = octets(pair[1], 2) ?? bad('PCE-ID is not 2 bytes');
    } else if (pair[0] === `${SGX_OID}.4`) {
      fmspc = octets(pair[1], 6) ?? bad('FMSPC is not 6 bytes');
    }
  }
  if (!tcb || !pceId || !fmspc) bad('TCB, PCE-ID or FMSPC missing');
  return { ...out, pceId: pceId!, fmspc: fmspc! };
}

// --- certificate paths with CRLs ------------------------------------------------------------

const MAX_PATH = 8;

interface PathInput {
  leaf: pkijs.Certificate;
  intermediates: pkijs.Certificate[];
  anchors: pkijs.Certificate[];
  crls: pkijs.CertificateRevocationList[];
  at: Date;
  what: string;
}

/** The path leaf → … → an anchor, each link by issuer name and signature; cert_chain otherwise. */
async function buildPath({ leaf, intermediates, anchors, what }: PathInput): Promise<pkijs.Certificate[]> {
  const path = [leaf];
  for (let current = leaf; path.length <= MAX_PATH;) {
    for (const anchor of anchors.filter((a) => sameName(a.subject, current.issuer))) {
      if (await signedBy(current, anchor)) return [...path, anchor];
    }
    const candidates = intermediates.filter((c) => !path.includes(c) && sameName(c.subject, current.issuer));
    let next: pkijs.Certificate | undefined;
    for (const candidate of candidates) if (!next && await signedBy(current, candidate)) next = candidate;
    if (!next) {
      const named = anchors.some((a) => sameName(a.subject, current.issuer)) || candidates.length > 0;
      return fail('cert_chain', `${what}: certificate '${shownName(current)}' (depth ${path.length - 1}): `
        + (named ? 'its signature does not verify with its issuer\'s key' : 'unable to get its issuer certificate (not a pinned root\'s chain)'));
    }
    path.push(next);
    current = next;
  }
  return fail('cert_chain', `${what}: the path is longer than ${MAX_PATH} certificates`);
}

/** Every certificate but the anchor under a current CRL its issuer signed, not listing it. */
async function checkRevocation(path: pkijs.Certificate[], crls: pkijs.CertificateRevocationList[], at: Date, what: string): Promise<void> {
  for (let i = 0; i + 1 < path.length; i += 1) {
    const [cert, issuer] = [path[i], path[i + 1]];
    const where = `${what}: certificate '${shownName(cert)}' (depth ${i})`;
    const named = crls.filter((crl) => sameName(crl.issuer, issuer.subject));
    if (named.length === 0) fail('crl', `${where}: unable to get certificate CRL (none of the CRLs is ${shownName(issuer)}'s)`);
    let crl: pkijs.CertificateRevocationList | undefined;
    for (const candidate of named) if (!crl && await crlSignedBy(candidate, issuer)) crl = candidate;
    if (!crl) return fail('crl', `${where}: CRL signature failure (the CRL named as ${shownName(issuer)}'s is not signed by it)`);
    if (!keyUsageBit(issuer, 6, true)) fail('crl', `${where}: the CRL's issuer may not sign CRLs (keyUsage)`);
    if (crl.thisUpdate.value > at) fail('expired', `${where}: CRL is not yet valid at ${at.toISOString()}`);
    if (!crl.nextUpdate || crl.nextUpdate.value < at) fail('expired', `${where}: CRL has expired at ${at.toISOString()}`);
    if (lists(crl, serialHex(cert))) fail('crl', `${where}: certificate revoked`);
  }
}

/**
 * verify_chain of the C++ verifier: leaf not a CA, the path to an anchor, every issuer a CA,
 * revocation (when CRLs are given), then every certificate valid at `at`. Returns the path.
 */
async function verifyPath(input: PathInput): Promise<pkijs.Certificate[]> {
  const { leaf, at, what } = input;
  if (isCa(leaf)) fail('cert_chain', `${what}: the leaf '${shownName(leaf)}' is a CA certificate`);
  const path = await buildPath(input);
  path.slice(1).forEach((cert, i) => {
    if (!isCa(cert)) fail('cert_chain', `${what}: certificate '${shownName(cert)}' (depth ${i + 1}): invalid CA certificate`);
  });
  if (input.crls.length > 0) await checkRevocation(path, input.crls, at, what);
  path.forEach((cert, i) => {
    if (!validAt(cert, at)) {
      fail('expired', `${what}: certificate '${shownName(cert)}' (depth ${i}) is not valid at ${at.toISOString()} `
        + `(valid ${cert.notBefore.value.toISOString()} … ${cert.notAfter.value.toISOString()})`);
    }
  });
  return path;
}

// --- collateral JSON ------------------------------------------------------------------------

const MAX_LEVELS = 64;

interface SignedJson { bodyOffset: number; bodySize: number; signature: Uint8Array; issueDate: number; nextUpdate: number }

const isWs = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const skipWs = (t: Uint8Array, i: number) => {
  while (i < t.length && isWs(t[i])) i += 1;
  return i;
};

/** One past the closing quote of the JSON string starting at t[i] === '"', or -1. */
function stringEnd(t: Uint8Array, i: number): number {
  for (i += 1; i < t.length; i += 1) {
    if (t[i] === 0x5c) i += 1;
    else if (t[i] === 0x22) return i + 1;
  }
  return -1;
}

/** The end of the JSON value starting at t[i] (the document already parsed), or -1. */
function valueEnd(t: Uint8Array, i: number): number {
  if (i >= t.length) return -1;
  if (t[i] === 0x22) return stringEnd(t, i);
  if (t[i] !== 0x7b && t[i] !== 0x5b) {
    while (i < t.length && t[i] !== 0x2c && t[i] !== 0x7d && t[i] !== 0x5d && !isWs(t[i])) i += 1;
    return i;
  }
  let depth = 0;
  for (; i < t.length; i += 1) {
    if (t[i] === 0x22) {
      i = stringEnd(t, i);
      if (i < 0) return -1;
      i -= 1;
    } else if (t[i] === 0x7b || t[i] === 0x5b) {
      depth += 1;
    } else if ((t[i] === 0x7d || t[i] === 0x5d) && --depth === 0) {
      return i + 1;
    }
  }
  return -1;
}

/** The byte range of top-level member `key`'s value as written; null when absent, duplicated or unreadable. */
export function rawMember(t: Uint8Array, key: string): [number, number] | null {
  let i = skipWs(t, 0);
  if (t[i] !== 0x7b) return null;
  let found: [number, number] | null = null;
  const decoder = new TextDecoder();
  for (i = skipWs(t, i + 1); i < t.length && t[i] === 0x22;) {
    const keyEnd = stringEnd(t, i);
    if (keyEnd < 0) return null;
    const name = decoder.decode(t.subarray(i + 1, keyEnd - 1));
    i = skipWs(t, keyEnd);
    if (t[i] !== 0x3a) return null;
    i = skipWs(t, i + 1);
    const end = valueEnd(t, i);
    if (end < 0) return null;
    if (name === key) {
      if (found) return null;
      found = [i, end - i];
    }
    i = skipWs(t, end);
    if (t[i] === 0x2c) i = skipWs(t, i + 1);
  }
  return found;
}

/** "2023-06-18T08:42:58Z" → Unix seconds, or null. */
function parseTime(s: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/.exec(s);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return null;
  return Date.UTC(year, month - 1, day, hour, minute, second) / 1000;
}

/** Typed reads of an object's members, the first problem thrown as malformed naming the document. */
class Fields {
  constructor(readonly obj: Record<string, unknown>, readonly doc: string) {}
  bad(what: string): never {
    return fail('malformed', `${this.doc}: ${what}`);
  }
  get(key: string): unknown {
    if (!Object.prototype.hasOwnProperty.call(this.obj, key)) this.bad(`missing "${key}"`);
    return this.obj[key];
  }
  str(key: string): string {
    const v = this.get(key);
    return typeof v === 'string' ? v : this.bad(`"${key}" is not a string`);
  }
  uint(key: string, max: number): number {
    const v = this.get(key);
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max ? v : this.bad(`"${key}" is not an integer in 0..${max}`);
  }
  hex(key: string, bytes: number): Uint8Array {
    const text = this.str(key);
    if (text.length !== 2 * bytes || !/^[0-9a-fA-F]*$/.test(text)) this.bad(`"${key}" must be ${bytes} bytes of hex`);
    return Uint8Array.from({ length: bytes }, (_, i) => parseInt(text.slice(2 * i, 2 * i + 2), 16));
  }
  time(key: string): number {
    return parseTime(this.str(key)) ?? this.bad(`"${key}" is not an ISO 8601 UTC time`);
  }
  array(key: string, max = MAX_LEVELS): unknown[] {
    const v = this.get(key);
    return Array.isArray(v) && v.length <= max ? v : this.bad(`"${key}" is not an array of at most ${max}`);
  }
  object(key: string, what = `"${key}" is not an object`): Fields {
    const v = this.get(key);
    return isObject(v) ? new Fields(v, this.doc) : this.bad(what);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `{"<member>": {...}, "signature": "hex"}` → the member's fields and the signed range. */
function parseSigned(bytes: Uint8Array, doc: string, member: string): { body: Fields; signed: SignedJson } {
  let root: unknown;
  try {
    root = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return fail('malformed', `${doc}: not a JSON object`);
  }
  if (!isObject(root)) return fail('malformed', `${doc}: not a JSON object`);
  const top = new Fields(root, doc);
  const body = isObject(root[member]) ? new Fields(root[member] as Record<string, unknown>, doc) : top.bad(`no "${member}" object`);
  const range = rawMember(bytes, member) ?? top.bad(`cannot find the raw bytes of "${member}"`);
  const signature = top.hex('signature', 64);
  const signed = { bodyOffset: range[0], bodySize: range[1], signature, issueDate: body.time('issueDate'), nextUpdate: body.time('nextUpdate') };
  return { body, signed };
}

interface IsvsvnLevel { isvsvn: number; status: string }
interface TcbLevel { sgx: Uint8Array; pceSvn: number; tdx: Uint8Array; status: string }
interface ModuleIdentity { id: string; mrsigner: Uint8Array; attributes: Uint8Array; attributesMask: Uint8Array; levels: IsvsvnLevel[] }

export interface TcbInfo {
  signed: SignedJson; fmspc: Uint8Array; pceId: Uint8Array;
  moduleMrsigner: Uint8Array; moduleAttributes: Uint8Array; moduleAttributesMask: Uint8Array;
  levels: TcbLevel[]; moduleIdentities: ModuleIdentity[];
}

export interface QeIdentity {
  signed: SignedJson; miscselect: number; miscselectMask: number; attributes: Uint8Array; attributesMask: Uint8Array;
  mrsigner: Uint8Array; isvProdId: number; levels: IsvsvnLevel[];
}

function levelTcb(level: unknown, f: Fields): Fields {
  return isObject(level) && isObject(level.tcb) ? new Fields(level.tcb, f.doc) : f.bad('a TCB level is not an object with "tcb"');
}

function isvsvnLevels(list: unknown[], f: Fields): IsvsvnLevel[] {
  return list.map((level) => {
    const tcb = levelTcb(level, f);
    return { isvsvn: tcb.uint('isvsvn', 0xffff), status: new Fields(level as Record<string, unknown>, f.doc).str('tcbStatus') };
  });
}

/** 16 {"svn": n} components; like QVL, an SVN keeps its low 8 bits. */
function components(tcb: Fields, key: string): Uint8Array {
  const list = tcb.obj[key];
  if (!Array.isArray(list) || list.length !== 16) tcb.bad(`"${key}" is not an array of 16 components`);
  return Uint8Array.from(list as unknown[], (c) => {
    if (!isObject(c)) tcb.bad(`a component of "${key}" is not an object`);
    return new Fields(c as Record<string, unknown>, tcb.doc).uint('svn', 0xffff) & 0xff;
  });
}

export function parseTcbInfo(bytes: Uint8Array): TcbInfo {
  const doc = 'tcbinfo.json';
  const { body: f, signed } = parseSigned(bytes, doc, 'tcbInfo');
  if (f.str('id') !== 'TDX') f.bad('"id" is not "TDX" (an SGX TCB Info?)');
  if (f.uint('version', 1000) !== 3) f.bad('"version" is not 3');
  const fmspc = f.hex('fmspc', 6);
  const pceId = f.hex('pceId', 2);
  const module = f.object('tdxModule');
  const levels = f.array('tcbLevels').map((level) => {
    const tcb = levelTcb(level, f);
    const status = new Fields(level as Record<string, unknown>, doc).str('tcbStatus');
    return { status, pceSvn: tcb.uint('pcesvn', 0xffff), sgx: components(tcb, 'sgxtcbcomponents'), tdx: components(tcb, 'tdxtcbcomponents') };
  });
  const moduleIdentities = f.obj.tdxModuleIdentities === undefined ? [] : f.array('tdxModuleIdentities').map((id) => {
    const m = isObject(id) ? new Fields(id, doc) : f.bad('a TDX module identity is not an object');
    return {
      id: m.str('id'), mrsigner: m.hex('mrsigner', 48), attributes: m.hex('attributes', 8), attributesMask: m.hex('attributesMask', 8),
      levels: isvsvnLevels(m.array('tcbLevels'), m),
    };
  });
  return {
    signed, fmspc, pceId, moduleMrsigner: module.hex('mrsigner', 48), moduleAttributes: module.hex('attributes', 8),
    moduleAttributesMask: module.hex('attributesMask', 8), levels, moduleIdentities,
  };
}

export function parseQeIdentity(bytes: Uint8Array): QeIdentity {
  const { body: f, signed } = parseSigned(bytes, 'qeidentity.json', 'enclaveIdentity');
  if (f.str('id') !== 'TD_QE') f.bad('"id" is not "TD_QE"');
  if (f.uint('version', 1000) !== 2) f.bad('"version" is not 2');
  // MISCSELECT is a little-endian u32 in the report, written big-endian in the JSON.
  const u32 = (b: Uint8Array) => ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  return {
    signed, miscselect: u32(f.hex('miscselect', 4)), miscselectMask: u32(f.hex('miscselectMask', 4)),
    attributes: f.hex('attributes', 16), attributesMask: f.hex('attributesMask', 16), mrsigner: f.hex('mrsigner', 32),
    isvProdId: f.uint('isvprodid', 0xffff), levels: isvsvnLevels(f.array('tcbLevels'), f),
  };
}

// --- TCB level and QE identity --------------------------------------------------------------

const STATUS_ORDER = ['Revoked', 'OutOfDateConfigurationNeeded', 'OutOfDate', 'ConfigurationAndSWHardeningNeeded',
  'ConfigurationNeeded', 'SWHardeningNeeded', 'UpToDate'];

/** The rank of a TCB status (higher is better), null for an unknown name. */
export function tcbStatusRank(status: string): number | null {
  const rank = STATUS_ORDER.indexOf(status);
  return rank < 0 ? null : rank;
}

const atLeast = (have: Uint8Array, need: Uint8Array, from = 0) => have.every((v, i) => i < from || v >= need[i]);
const equalBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

function checkModule(body: TdReport, mrsigner: Uint8Array, attributes: Uint8Array, mask: Uint8Array, which: string): void {
  const match = equalBytes(body.mrsignerseam, mrsigner)
    && body.seamAttributes.every((v, i) => (v & mask[i]) === (attributes[i] & mask[i]));
  if (!match) {
    fail('tcb_status', `the TDX module (MRSIGNERSEAM ${toHex(body.mrsignerseam)}, SEAM attributes ${toHex(body.seamAttributes)}) `
      + `is not the TCB Info's ${which}`);
  }
}

/** The status of the first TCB level the platform meets (match_tcb_level of the C++ verifier). */
export function matchTcbLevel(info: TcbInfo, pck: PckExtensions, body: TdReport): string {
  const svn = body.teeTcbSvn;
  const from = svn[1] > 0 ? 2 : 0;  // with a TDX module version, its SVNs are judged by the module identity
  const level = info.levels.find((l) => atLeast(pck.cpuSvnComponents, l.sgx) && pck.pceSvn >= l.pceSvn && atLeast(svn, l.tdx, from));
  if (!level) {
    return fail('tcb_status', `no TCB level of the TCB Info matches the PCK's CPU SVN ${toHex(pck.cpuSvnComponents)}, `
      + `PCESVN ${pck.pceSvn} and the quote's TEE_TCB_SVN ${toHex(svn)}`);
  }
  if (from === 0 || info.moduleIdentities.length === 0) {
    checkModule(body, info.moduleMrsigner, info.moduleAttributes, info.moduleAttributesMask, 'tdxModule');
    return level.status;
  }
  const id = `TDX_${toHex(svn.subarray(1, 2)).toUpperCase()}`;
  const module = info.moduleIdentities.find((m) => m.id.toUpperCase() === id)
    ?? fail('tcb_status', `the TCB Info has no TDX module identity ${id}`);
  checkModule(body, module.mrsigner, module.attributes, module.attributesMask, id);
  const moduleLevel = module.levels.find((l) => svn[0] >= l.isvsvn)
    ?? fail('tcb_status', `no TCB level of TDX module ${id} matches its SVN ${svn[0]}`);
  const a = tcbStatusRank(level.status);
  const b = tcbStatusRank(moduleLevel.status);
  return b === null || (a !== null && b < a) ? moduleLevel.status : level.status;
}

function checkTcb(info: TcbInfo, pck: PckExtensions, body: TdReport, minimum: string): string {
  if (!equalBytes(info.fmspc, pck.fmspc) || !equalBytes(info.pceId, pck.pceId)) {
    fail('tcb_status', `the TCB Info is for FMSPC ${toHex(info.fmspc)} / PCE-ID ${toHex(info.pceId)}, `
      + `the PCK certificate says ${toHex(pck.fmspc)} / ${toHex(pck.pceId)}`);
  }
  const status = matchTcbLevel(info, pck, body);
  const rank = tcbStatusRank(status);
  const min = tcbStatusRank(minimum) ?? fail('malformed', `policy minTcbStatus "${minimum.slice(0, 40)}" is unknown`);
  if (rank === null || status === 'Revoked' || rank < min) {
    fail('tcb_status', `the platform's TCB status is ${status.slice(0, 40)}, the policy asks at least ${minimum}`);
  }
  return status;
}

function checkQeIdentity(id: QeIdentity, qe: QeReport): void {
  if (!equalBytes(qe.mrsigner, id.mrsigner)) fail('qe_identity', `QE MRSIGNER ${toHex(qe.mrsigner)} is not Intel's ${toHex(id.mrsigner)}`);
  if (qe.isvProdId !== id.isvProdId) fail('qe_identity', `QE ISVPRODID ${qe.isvProdId} is not ${id.isvProdId}`);
  if (((qe.miscselect & id.miscselectMask) >>> 0) !== id.miscselect) fail('qe_identity', 'QE MISCSELECT does not match under its mask');
  if (!qe.attributes.every((v, i) => (v & id.attributesMask[i]) === id.attributes[i])) {
    fail('qe_identity', 'QE ATTRIBUTES do not match under their mask');
  }
  const level = id.levels.find((l) => qe.isvSvn >= l.isvsvn) ?? fail('qe_identity', `no QE Identity level matches the QE's ISVSVN ${qe.isvSvn}`);
  if (tcbStatusRank(level.status) === null || level.status === 'Revoked' || level.status.startsWith('OutOfDate')) {
    fail('qe_identity', `the QE's ISVSVN ${qe.isvSvn} is ${level.status.slice(0, 40)}`);
  }
}

function checkPolicy(body: TdReport, policy: TdxPolicy, allowDebug: boolean): void {
  if ((body.tdAttributes[0] & 1) !== 0 && !allowDebug) {
    fail('debug', 'the TD runs in debug mode (TD_ATTRIBUTES.TUD.DEBUG) and the policy does not allow it');
  }
  const fields: [string, Uint8Array[], Uint8Array][] = [
    ['mrtd', policy.mrtd, body.mrtd], ['rtmr0', policy.rtmr0, body.rtmr[0]], ['rtmr1', policy.rtmr1, body.rtmr[1]],
    ['rtmr2', policy.rtmr2, body.rtmr[2]], ['rtmr3', policy.rtmr3, body.rtmr[3]], ['mrseam', policy.mrseam, body.mrseam],
    ['xfam', policy.xfam, body.xfam],
  ];
  for (const [name, accepted, value] of fields) {
    if (accepted.length > 0 && !accepted.some((a) => equalBytes(a, value))) fail('measurement', `${name} ${toHex(value)} is not in the policy`);
  }
}

// --- verifyTdx ------------------------------------------------------------------------------

export interface TdxInput {
  quote: Uint8Array;
  collateral: Record<string, Uint8Array>;
  policy: TdxPolicy;
  allowDebug: boolean;
  /** Unix seconds. */
  at: number;
  /** PEM trust anchors instead of the pinned Intel SGX Root CA (tests only; the client never sets it). */
  trustAnchorsPem?: string;
  /** When given, REPORTDATA must equal it (report_data, the last check). */
  expectedReportData?: Uint8Array;
}

interface Context {
  in: TdxInput;
  at: Date;
  anchors: pkijs.Certificate[];
  pckCrl: pkijs.CertificateRevocationList;
  rootCrl: pkijs.CertificateRevocationList;
  validUntil: number;
}

function requireFile(collateral: Record<string, Uint8Array>, name: string): Uint8Array {
  return Object.prototype.hasOwnProperty.call(collateral, name) ? collateral[name] : fail('malformed', `TDX collateral file ${name} is missing`);
}

/** Self-signed roots only (a non-root anchor is malformed, as in the C++ parse_anchors). */
async function loadAnchors(pem: string | undefined): Promise<pkijs.Certificate[]> {
  const anchors = parsePem(pem ?? PINNED_INTEL_ROOT, pem === undefined ? 'pinned Intel root' : 'trust anchors');
  for (const anchor of anchors) {
    if (!sameName(anchor.subject, anchor.issuer) || !(await signedBy(anchor, anchor))) {
      fail('malformed', `trust anchor '${shownName(anchor)}' is not a self-issued root`);
    }
  }
  return anchors;
}

/** The quote's PCK chain: PEM, or concatenated DER certificates (QVL's synthetic quotes). */
function quoteCerts(chain: Uint8Array): pkijs.Certificate[] {
  const text = new TextDecoder().decode(chain);
  if (text.includes('-----BEGIN CERTIFICATE-----')) return parsePem(text, 'PCK chain');
  const certs: pkijs.Certificate[] = [];
  for (let rest = chain; rest.length > 0;) {
    if (rest.length < 4 || rest[0] !== 0x30 || (rest[1] !== 0x81 && rest[1] !== 0x82)) {
      fail('malformed', 'TDX quote: the PCK chain is neither PEM nor DER certificates');
    }
    const header = rest[1] === 0x81 ? 3 : 4;
    const length = rest[1] === 0x81 ? rest[2] : (rest[2] << 8) | rest[3];
    if (header + length > rest.length) fail('malformed', 'TDX quote: a PCK chain certificate is truncated');
    certs.push(parseDer(rest.subarray(0, header + length), 'PCK chain certificate'));
    rest = rest.subarray(header + length);
  }
  return certs;
}

/** The QE report by the PCK, its report data binding the attestation key, the quote by that key. */
async function checkSignatures(q: Quote, pck: pkijs.Certificate): Promise<void> {
  await verifyEcdsa(pck, 'P-256', 'SHA-256', q.qeReportSignature, q.qeReportBytes, 'QE report (by the PCK)');
  const keyAndAuth = new Uint8Array(64 + q.qeAuthData.length);
  keyAndAuth.set(q.attestationKey);
  keyAndAuth.set(q.qeAuthData, 64);
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', keyAndAuth));
  const rd = q.qeReport.reportData;
  if (!equalBytes(digest, rd.subarray(0, 32)) || rd.subarray(32).some((b) => b !== 0)) {
    fail('signature', 'QE report data is not SHA-256(attestation key || QE authentication data)');
  }
  let key: CryptoKey;
  try {
    const point = new Uint8Array(65);
    point[0] = 4;
    point.set(q.attestationKey, 1);
    key = await globalThis.crypto.subtle.importKey('raw', point, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  } catch {
    return fail('malformed', 'attestation key: the EC public key is not a point of the curve');
  }
  await verifyEcdsa(key, 'P-256', 'SHA-256', q.signature, q.signedBytes, 'quote (by the attestation key)');
}

/** Chain (with both CRLs and pckcrl_issuer_chain.pem's certificates), then the signatures, then the SGX extensions. */
async function checkQuote(cx: Context, quote: Quote): Promise<PckExtensions> {
  const certs = quoteCerts(quote.pckChain);
  const leaf = certs.find((c) => extension(c, SGX_OID) !== null) ?? fail('cert_chain', 'the quote\'s PCK chain has no PCK certificate');
  const extra = cx.in.collateral['pckcrl_issuer_chain.pem'];
  const intermediates = [...certs.filter((c) => c !== leaf),
    ...(extra ? parsePem(new TextDecoder().decode(extra), 'pckcrl_issuer_chain.pem') : [])];
  const path = await verifyPath({ leaf, intermediates, anchors: cx.anchors, crls: [cx.pckCrl, cx.rootCrl], at: cx.at, what: 'PCK chain' });
  await checkSignatures(quote, leaf);
  const pck = parsePckExtensions(extension(leaf, SGX_OID));
  cx.validUntil = Math.min(cx.validUntil, ...path.map(notAfterSeconds));
  return pck;
}

/** A signed collateral document: its signer's chain to the root (with the root CRL), the signature over its raw bytes, its window. */
async function checkSigned(cx: Context, doc: string, file: Uint8Array, signed: SignedJson, chainName: string): Promise<void> {
  const certs = parsePem(new TextDecoder().decode(requireFile(cx.in.collateral, chainName)), chainName);
  const signer = certs.find((c) => !isCa(c)) ?? fail('cert_chain', `${chainName} has no signing certificate`);
  const path = await verifyPath({
    leaf: signer, intermediates: certs.filter((c) => c !== signer), anchors: cx.anchors, crls: [cx.rootCrl], at: cx.at, what: chainName,
  });
  cx.validUntil = Math.min(cx.validUntil, ...path.map(notAfterSeconds));
  await verifyEcdsa(signer, 'P-256', 'SHA-256', signed.signature, file.subarray(signed.bodyOffset, signed.bodyOffset + signed.bodySize), doc);
  if (cx.in.at < signed.issueDate || cx.in.at >= signed.nextUpdate) {
    fail('expired', `${doc} is valid from ${signed.issueDate} to ${signed.nextUpdate} (Unix seconds), not at ${cx.in.at}`);
  }
  cx.validUntil = Math.min(cx.validUntil, signed.nextUpdate);
}

function fieldsOf(quote: Quote, pck: PckExtensions): Record<string, string> {
  const b = quote.body;
  return {
    rtmr0: toHex(b.rtmr[0]), rtmr1: toHex(b.rtmr[1]), rtmr2: toHex(b.rtmr[2]), rtmr3: toHex(b.rtmr[3]), mrseam: toHex(b.mrseam),
    xfam: toHex(b.xfam), td_attributes: toHex(b.tdAttributes), fmspc: toHex(pck.fmspc), tee_tcb_svn: toHex(b.teeTcbSvn),
    quote_version: String(quote.version),
  };
}

/**
 * Everything that needs no collateral (check_quote of the C++ verifier): parse, the PCK chain from
 * the quote to the anchors at `at` without CRLs, the QE report, its report data, the quote signature.
 */
export async function checkTdxQuote(quoteBytes: Uint8Array, at: number, trustAnchorsPem?: string): Promise<{ quote: Quote; pck: PckExtensions }> {
  const quote = parseQuote(quoteBytes);
  const certs = quoteCerts(quote.pckChain);
  const leaf = certs.find((c) => extension(c, SGX_OID) !== null) ?? fail('cert_chain', 'the quote\'s PCK chain has no PCK certificate');
  const anchors = await loadAnchors(trustAnchorsPem);
  await verifyPath({ leaf, intermediates: certs.filter((c) => c !== leaf), anchors, crls: [], at: new Date(at * 1000), what: 'PCK chain' });
  await checkSignatures(quote, leaf);
  return { quote, pck: parsePckExtensions(extension(leaf, SGX_OID)) };
}

/** Verifies a TDX quote with its collateral; throws HardwareFailure naming the first check that failed. */
export async function verifyTdx(input: TdxInput): Promise<TdxVerified> {
  const quote = parseQuote(input.quote);
  const anchors = await loadAnchors(input.trustAnchorsPem);
  const crls = ['pckcrl.der', 'rootcrl.der'].map((name) => parseCrl(requireFile(input.collateral, name), name));
  const cx: Context = {
    in: input, at: new Date(input.at * 1000), anchors, pckCrl: crls[0], rootCrl: crls[1],
    validUntil: Math.min(...crls.map((c) => (c.nextUpdate ? Math.floor(c.nextUpdate.value.getTime() / 1000) : 0))),
  };
  const pck = await checkQuote(cx, quote);
  const infoFile = requireFile(input.collateral, 'tcbinfo.json');
  const info = parseTcbInfo(infoFile);
  await checkSigned(cx, 'tcbinfo.json', infoFile, info.signed, 'tcbinfo_issuer_chain.pem');
  const identityFile = requireFile(input.collateral, 'qeidentity.json');
  const identity = parseQeIdentity(identityFile);
  await checkSigned(cx, 'qeidentity.json', identityFile, identity.signed, 'qeidentity_issuer_chain.pem');
  const tcbStatus = checkTcb(info, pck, quote.body, input.policy.minTcbStatus);
  checkQeIdentity(identity, quote.qeReport);
  checkPolicy(quote.body, input.policy, input.allowDebug);
  if (input.expectedReportData && !equalBytes(input.expectedReportData, quote.body.reportData)) {
    fail('report_data', `REPORTDATA ${toHex(quote.body.reportData)} is not the expected binding`);
  }
  return {
    provider: 'tdx', measurement: quote.body.mrtd, reportData: quote.body.reportData, debug: (quote.body.tdAttributes[0] & 1) !== 0,
    tcbStatus, validUntil: cx.validUntil, fields: fieldsOf(quote, pck),
  };
}
