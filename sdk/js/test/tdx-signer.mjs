// Test-only Intel TDX signer, the JavaScript twin of tests/support/tdx_signer.hpp: a test root →
// PCK CA → PCK certificate (with Intel's SGX extensions: FMSPC, PCE-ID, TCB components, PCESVN,
// CPUSVN) and a TCB signing certificate, made with PKI.js and WebCrypto (fresh P-256 keys); it
// signs TCB Info, QE Identity, both CRLs, a QE report and v4 quotes with any REPORTDATA, MRTD,
// RTMRs, TD attributes or TEE TCB SVN, so the tests can reach every check of verifyTdx
// (options.sgxExtensionDer: other bytes as the PCK's SGX extension).
//
// Design: the certificates carry test names ("rvenc test SGX Root CA", ...), so they verify only
// under `anchorsPem`, never under the pinned Intel root. The collateral JSON is written as Intel's
// PCS writes it (one TCB level equal to the platform, one QE level) and signed over the exact bytes
// of its value. Only the tests import this file.
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

const SGX = '1.2.840.113741.1.13.1';
const DAY = 86400;
const subtle = globalThis.crypto.subtle;
const hex = (b) => Buffer.from(b).toString('hex');
const iso = (t) => new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

function name(cn) {
  return new pkijs.RelativeDistinguishedNames({
    typesAndValues: [new pkijs.AttributeTypeAndValue({ type: '2.5.4.3', value: new asn1js.Utf8String({ value: cn }) })],
  });
}

const pair = (oid, value) => new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: oid }), value] });

/** The SGX extensions' DER: TCB (16 components, PCESVN, CPUSVN), PCE-ID, FMSPC. */
function sgxExtension(o) {
  const tcb = [...o.cpuSvnComponents].map((svn, i) => pair(`${SGX}.2.${i + 1}`, new asn1js.Integer({ value: svn })));
  tcb.push(pair(`${SGX}.2.17`, new asn1js.Integer({ value: o.pceSvn })));
  tcb.push(pair(`${SGX}.2.18`, new asn1js.OctetString({ valueHex: new Uint8Array(16) })));
  return new asn1js.Sequence({
    value: [pair(`${SGX}.1`, new asn1js.OctetString({ valueHex: new Uint8Array(16).fill(7) })),
      pair(`${SGX}.2`, new asn1js.Sequence({ value: tcb })),
      pair(`${SGX}.3`, new asn1js.OctetString({ valueHex: new Uint8Array([0, 0]) })),
      pair(`${SGX}.4`, new asn1js.OctetString({ valueHex: Uint8Array.from(o.fmspc) }))],
  });
}

let serial = 1;
async function certificate({ subject, issuer, keys, issuerKey, ca, notBefore, notAfter, extra = [] }) {
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = new asn1js.Integer({ value: serial++ });
  cert.subject = name(subject);
  cert.issuer = name(issuer);
  cert.notBefore.value = new Date(notBefore * 1000);
  cert.notAfter.value = new Date(notAfter * 1000);
  await cert.subjectPublicKeyInfo.importKey(keys.publicKey);
  const usage = new asn1js.BitString({ valueHex: new Uint8Array([ca ? 0x06 : 0xc0]), unusedBits: 1 });
  cert.extensions = [
    new pkijs.Extension({ extnID: '2.5.29.19', critical: true, extnValue: new pkijs.BasicConstraints({ cA: ca }).toSchema().toBER(false) }),
    new pkijs.Extension({ extnID: '2.5.29.15', critical: true, extnValue: usage.toBER(false) }),
    ...extra,
  ];
  await cert.sign(issuerKey, 'SHA-256');
  return cert;
}

const pem = (cert) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(cert.toSchema(true).toBER(false)).toString('base64')
  .match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;

async function crl(issuer, key, thisUpdate, nextUpdate, revoked = []) {
  const list = new pkijs.CertificateRevocationList({
    version: 1, issuer: name(issuer),
    thisUpdate: new pkijs.Time({ type: 0, value: new Date(thisUpdate * 1000) }),
    nextUpdate: new pkijs.Time({ type: 0, value: new Date(nextUpdate * 1000) }),
  });
  if (revoked.length > 0) {
    list.revokedCertificates = revoked.map((cert) => new pkijs.RevokedCertificate({
      userCertificate: cert.serialNumber, revocationDate: new pkijs.Time({ type: 0, value: new Date(thisUpdate * 1000) }),
    }));
  }
  await list.sign(key, 'SHA-256');
  return new Uint8Array(list.toSchema(true).toBER(false));
}

const sign = async (key, bytes) => new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, bytes));
const generate = () => subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);

/** `{"<member>":<body>,"signature":"<hex of the signature over body's bytes>"}`. */
async function signedJson(member, body, key) {
  return new TextEncoder().encode(`{"${member}":${body},"signature":"${hex(await sign(key, new TextEncoder().encode(body)))}"}`);
}

const QE_MRSIGNER = new Uint8Array(32).fill(0xdc);

export async function createTdxSigner(options = {}) {
  const o = {
    cpuSvnComponents: [4, 4, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0], pceSvn: 13, fmspc: [0x90, 0xc0, 0x6f, 0, 0, 0],
    minTeeTcbSvn: [5, 0, 3], tcbStatus: 'UpToDate', qeStatus: 'UpToDate', notBefore: Math.floor(Date.now() / 1000) - DAY, ...options,
  };
  o.notAfter ??= o.notBefore + 730 * DAY;
  const [rootKeys, caKeys, pckKeys, tcbKeys] = await Promise.all([generate(), generate(), generate(), generate()]);
  const span = { notBefore: o.notBefore, notAfter: o.notAfter };
  const root = await certificate({ subject: 'rvenc test SGX Root CA', issuer: 'rvenc test SGX Root CA', keys: rootKeys, issuerKey: rootKeys.privateKey, ca: true, ...span });
  const pckCa = await certificate({ subject: 'rvenc test SGX PCK Platform CA', issuer: 'rvenc test SGX Root CA', keys: caKeys, issuerKey: rootKeys.privateKey, ca: true, ...span });
  const sgx = new pkijs.Extension({ extnID: SGX, extnValue: o.sgxExtensionDer ?? sgxExtension(o).toBER(false) });
  const pck = await certificate({ subject: 'rvenc test SGX PCK Certificate', issuer: 'rvenc test SGX PCK Platform CA', keys: pckKeys, issuerKey: caKeys.privateKey, ca: false, extra: [sgx], ...span });
  const tcbSigner = await certificate({ subject: 'rvenc test SGX TCB Signing', issuer: 'rvenc test SGX Root CA', keys: tcbKeys, issuerKey: rootKeys.privateKey, ca: false, ...span });
  const [issueDate, nextUpdate] = [o.notBefore, o.notAfter];
  const components = (svns) => `[${Array.from({ length: 16 }, (_, i) => `{"svn":${svns[i] ?? 0}}`).join(',')}]`;
  const tcbInfo = `{"id":"TDX","version":3,"issueDate":"${iso(issueDate)}","nextUpdate":"${iso(nextUpdate)}","fmspc":"${hex(o.tcbInfoFmspc ?? o.fmspc)}",`
    + `"pceId":"0000","tcbType":0,"tcbEvaluationDataNumber":17,"tdxModule":{"mrsigner":"${'00'.repeat(48)}","attributes":"0000000000000000",`
    + `"attributesMask":"FFFFFFFFFFFFFFFF"},"tcbLevels":[{"tcb":{"sgxtcbcomponents":${components(o.cpuSvnComponents)},"pcesvn":${o.pceSvn},`
    + `"tdxtcbcomponents":${components(o.minTeeTcbSvn)}},"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"${o.tcbStatus}"}]}`;
  const qeIdentity = `{"id":"TD_QE","version":2,"issueDate":"${iso(issueDate)}","nextUpdate":"${iso(nextUpdate)}","tcbEvaluationDataNumber":17,`
    + `"miscselect":"00000000","miscselectMask":"FFFFFFFF","attributes":"11000000000000000000000000000000",`
    + `"attributesMask":"FBFFFFFFFFFFFFFF0000000000000000","mrsigner":"${hex(QE_MRSIGNER)}","isvprodid":2,`
    + `"tcbLevels":[{"tcb":{"isvsvn":4},"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"${o.qeStatus}"}]}`;
  const chain = pem(tcbSigner) + pem(root);
  const signer = {
    anchorsPem: pem(root),
    validAt: o.notBefore + DAY,
    notAfter: o.notAfter,
    pck,
    async pckCrl(revokePck = false) {
      return crl('rvenc test SGX PCK Platform CA', caKeys.privateKey, issueDate, nextUpdate, revokePck ? [pck] : []);
    },
    async collateral() {
      return {
        'tcbinfo.json': await signedJson('tcbInfo', tcbInfo, tcbKeys.privateKey), 'tcbinfo_issuer_chain.pem': new TextEncoder().encode(chain),
        'qeidentity.json': await signedJson('enclaveIdentity', qeIdentity, tcbKeys.privateKey), 'qeidentity_issuer_chain.pem': new TextEncoder().encode(chain),
        'pckcrl.der': await signer.pckCrl(false), 'pckcrl_issuer_chain.pem': new TextEncoder().encode(pem(pckCa) + pem(root)),
        'rootcrl.der': await crl('rvenc test SGX Root CA', rootKeys.privateKey, issueDate, nextUpdate),
        'trust_root.pem': new TextEncoder().encode(pem(root)),
      };
    },
    /** A v4 quote carrying `reportData` (64 bytes); q: mrtd, rtmr[4], mrseam, tdAttributes, xfam, teeTcbSvn (arrays of bytes). */
    async quote(reportData, q = {}) {
      const body = new Uint8Array(584);
      body.set(q.teeTcbSvn ?? [5, 0, 3], 0);
      body.set(q.mrseam ?? [0x5e], 16);
      body.set(q.tdAttributes ?? [], 120);
      body.set(q.xfam ?? [0xe7, 0x02, 0x06], 128);
      body.set(q.mrtd ?? [0x7d, 0x7d], 136);
      (q.rtmr ?? []).forEach((rtmr, i) => body.set(rtmr, 328 + 48 * i));
      body.set(reportData, 520);
      const header = new Uint8Array(48);
      header.set([4, 0, 2, 0, 0x81, 0, 0, 0]);
      const signedBytes = new Uint8Array([...header, ...body]);
      const attestation = await generate();
      const attestationKey = new Uint8Array(await subtle.exportKey('raw', attestation.publicKey)).slice(1);
      const auth = new Uint8Array(32).fill(0xa0);
      const qeReport = new Uint8Array(384);
      qeReport.set([0x11], 48);  // attributes
      qeReport.set(QE_MRSIGNER, 128);
      qeReport.set([2, 0, 8, 0], 256);  // ISVPRODID 2, ISVSVN 8
      qeReport.set(new Uint8Array(await subtle.digest('SHA-256', new Uint8Array([...attestationKey, ...auth]))), 320);
      const chainPem = new TextEncoder().encode(pem(pck) + pem(pckCa));
      const le = (n, bytes) => Array.from({ length: bytes }, (_, i) => (n >>> (8 * i)) & 0xff);
      const inner = [...qeReport, ...await sign(pckKeys.privateKey, qeReport), ...le(auth.length, 2), ...auth, ...le(5, 2), ...le(chainPem.length, 4), ...chainPem];
      const sigData = [...await sign(attestation.privateKey, signedBytes), ...attestationKey, ...le(6, 2), ...le(inner.length, 4), ...inner];
      return new Uint8Array([...signedBytes, ...le(sigData.length, 4), ...sigData]);
    },
  };
  return signer;
}
