// The SEV-SNP verifier of the TypeScript SDK (src/hardware.ts) on the C++ verifier's fixtures
// (shared/attestation/sev-snp/, see its README), with the same expected outcomes, and one changed
// byte (or policy value) per named check; then the same evidence inside an attestation document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HardwareFailure, parseHardwarePolicy, verifyEvidence } from '../dist/hardware.js';
import { PINNED_AMD_ARKS } from '../dist/hardware_roots.js';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import * as t from '../dist/internal.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
// shared/ is next to the checkout (RVENC_VECTORS_DIR=<shared>/vectors under CTest).
const fixtures = [process.env.RVENC_VECTORS_DIR && join(process.env.RVENC_VECTORS_DIR, '..', 'attestation', 'sev-snp'),
  join(repo, '..', 'shared', 'attestation', 'sev-snp')].filter(Boolean)
  .find((dir) => existsSync(dir));
await t.ready();
const AT = 1700000000;  // 2023-11-14: inside every fixture's validity

function load(set) {
  const files = {};
  for (const name of readdirSync(join(fixtures, set))) files[name] = new Uint8Array(readFileSync(join(fixtures, set, name)));
  return files;
}

const run = (set, { policy = {}, at = AT, change, trustAnchorsPem } = {}) => {
  const collateral = load(set);
  change?.(collateral);
  return verifyEvidence({ provider: 'sev-snp', evidence: collateral['report.bin'], collateral, policy: parseHardwarePolicy(policy), at, trustAnchorsPem });
};
const failsAt = (check, pattern = /./) => (e) => e instanceof HardwareFailure && e.check === check && pattern.test(e.message);
const flip = (file, offset) => (c) => {
  c[file] = c[file].slice();
  c[file][offset < 0 ? c[file].length + offset : offset] ^= 1;
};

test('sev-snp milan-virtee verifies: Milan, its measurement, valid until the chain ends', { skip: !fixtures }, async () => {
  const verified = await run('milan-virtee');
  assert.equal(verified.product, 'Milan');
  assert.equal(verified.debug, false);
  assert.match(t.toHex(verified.measurement), /^7a1e5c266c0108dbc9bb94fa92695132/);
  assert.ok(verified.validUntil > AT);
});

test('sev-snp milan-debug: debug by default, verifies with allowDebug', { skip: !fixtures }, async () => {
  await assert.rejects(run('milan-debug'), failsAt('debug', /POLICY bit 19/));
  const verified = await run('milan-debug', { policy: { allowDebug: true } });
  assert.equal(verified.debug, true);
});

test('sev-snp: one change per check fails at that check', { skip: !fixtures }, async () => {
  const cases = [
    ['malformed', { change: (c) => { c['report.bin'] = c['report.bin'].slice(0, 1183); } }, /1183 bytes/],
    ['malformed', { change: (c) => { delete c['vcek.der']; } }, /vcek.der is missing/],
    ['malformed', { change: (c) => { c['ask_ark.pem'] = new TextEncoder().encode('not a certificate'); } }, /no PEM certificate/],
    ['signature', { change: flip('report.bin', 0x90) }, /does not verify/],         // the measured body
    ['signature', { change: flip('report.bin', 0x2a0) }, /does not verify/],        // the signature's r
    ['cert_chain', { change: flip('vcek.der', -5) }, /leaf's signature/],           // the VCEK's own signature
    ['cert_chain', { trustAnchorsPem: readFileSync(join(fixtures, 'roots', 'ask_ark_genoa.pem'), 'utf8') }, /pinned ARK/],
    ['expired', { at: 1950000000 }, /not valid at/],                                 // 2031
    ['tcb_status', { policy: { sevSnp: { minTcb: '0400000000000873' } } }, /below the policy's minimum/],
    ['debug', { policy: { sevSnp: { allowSmt: false } } }, /SMT/],
    ['measurement', { policy: { sevSnp: { measurement: ['00'.repeat(48)] } } }, /MEASUREMENT/],
    ['measurement', { policy: { sevSnp: { hostData: ['11'.repeat(32)] } } }, /HOST_DATA/],
    ['measurement', { policy: { providers: ['tdx'] } }, /not listed/],
  ];
  for (const [check, options, pattern] of cases) {
    await assert.rejects(run('milan-virtee', options), failsAt(check, pattern), `expected ${check} (${pattern})`);
  }
});

test('sev-snp: a tampered REPORTED_TCB fails at signature (signed), the measured values pass when listed', { skip: !fixtures }, async () => {
  await assert.rejects(run('milan-virtee', { change: flip('report.bin', 0x180) }), failsAt('signature'));
  const measurement = t.toHex((await run('milan-virtee')).measurement);
  await run('milan-virtee', { policy: { sevSnp: { measurement: ['00'.repeat(48), measurement], minTcb: '0300000000000873' } } });
});

// A CRL (crl.der) naming the ARK as its issuer but signed by another key: crl. Garbage: malformed.
test('sev-snp crl.der: not DER is malformed, not signed by the ARK is crl, none is accepted', { skip: !fixtures }, async () => {
  const pem = new TextDecoder().decode(load('milan-virtee')['ask_ark.pem']);
  const blocks = [...pem.matchAll(/-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/g)];
  const ark = pkijs.Certificate.fromBER(Buffer.from(blocks[1][1].replace(/\s/g, ''), 'base64'));
  const crlBy = async (issuer) => {
    const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const crl = new pkijs.CertificateRevocationList({ version: 1, issuer,
      thisUpdate: new pkijs.Time({ type: 0, value: new Date('2023-01-01T00:00:00Z') }),
      nextUpdate: new pkijs.Time({ type: 0, value: new Date('2024-01-01T00:00:00Z') }) });
    await crl.sign(keys.privateKey, 'SHA-256');
    return new Uint8Array(crl.toSchema(true).toBER());
  };
  const withCrl = (der) => ({ change: (c) => { c['crl.der'] = der; } });
  await assert.rejects(run('milan-virtee', withCrl(new Uint8Array([0x30, 0x03, 1, 2, 3]))), failsAt('malformed', /crl.der/));
  await assert.rejects(run('milan-virtee', withCrl(await crlBy(ark.subject))), failsAt('crl', /signature does not verify/));
  const stranger = new pkijs.RelativeDistinguishedNames({
    typesAndValues: [new pkijs.AttributeTypeAndValue({ type: '2.5.4.3', value: new asn1js.Utf8String({ value: 'someone else' }) })],
  });
  await assert.rejects(run('milan-virtee', withCrl(await crlBy(stranger))), failsAt('crl', /none of the chain/));
});

test('sev-snp policy: strict like the C++ parser (unknown keys, lengths, types named)', () => {
  for (const [policy, pattern] of [
    [{ allowDebg: true }, /unknown key "allowDebg"/], [{ sevSnp: { measurment: [] } }, /unknown key "measurment"/],
    [{ sevSnp: { measurement: ['ab'] } }, /sevSnp.measurement values must be 48 bytes/],
    [{ sevSnp: { minTcb: '03' } }, /sevSnp.minTcb/], [{ providers: ['simulated'] }, /providers/],
    [{ providers: [] }, /providers/], [{ allowDebug: 'yes' }, /allowDebug must be true or false/],
    [{ tdx: { mrtd: ['00'] } }, /tdx.mrtd/], ['{', /not JSON/], [[], /JSON object/],
  ]) {
    assert.throws(() => parseHardwarePolicy(policy), failsAt('malformed', pattern), String(pattern));
  }
  assert.deepEqual(parseHardwarePolicy(undefined).providers, ['tdx', 'sev-snp']);
  assert.equal(parseHardwarePolicy('{"sevSnp":{"allowSmt":false}}').sevSnp.allowSmt, false);
});

test('sev-snp: the pinned ARKs are the C++ verifier\'s (same SHA-256 fingerprints)', () => {
  const roots = readFileSync(join(repo, 'src', 'attestation', 'roots.cpp'), 'utf8');
  assert.equal(PINNED_AMD_ARKS.length, 3);
  for (const pem of PINNED_AMD_ARKS) {
    const der = Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const fingerprint = createHash('sha256').update(der).digest('hex');
    assert.ok(roots.includes(fingerprint), `${fingerprint} is not a fingerprint of roots.cpp`);
    assert.ok(roots.replace(/\s/g, '').includes(pem.replace(/\s/g, '')), 'the PEM is not the C++ one');
  }
});

// The evidence inside a document: every hardware check passes, then REPORT_DATA (the fixture's)
// is not the document's binding of our key and challenge: report_data, after everything else.
test('attestation document with sev-snp evidence: verified through the hardware checks, then report_data', { skip: !fixtures }, async () => {
  await t.ready();
  const challenge = new Uint8Array(32).fill(3);
  const { publicKey } = t.xwingSeedKeypair(new Uint8Array(32).fill(1));
  const notAfter = AT + 3600;
  const files = load('milan-virtee');
  const doc = (measurement, collateral = { 'vcek.der': files['vcek.der'], 'ask_ark.pem': files['ask_ark.pem'] }) => ({
    keyId: t.toHex(new Uint8Array(createHash('sha256').update(publicKey).digest()).slice(0, 8)), kem: 'X-Wing', publicKey: t.toHex(publicKey),
    notAfter, provider: 'sev-snp', binding: 2, evidence: Buffer.from(files['report.bin']).toString('base64'), measurement,
    collateral: Object.fromEntries(Object.entries(collateral).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  });
  const measurement = t.toHex(files['report.bin'].slice(0x90, 0x90 + 48));
  const verify = async (json) => {
    json.reportData = t.toHex(await t.reportDataV2For(publicKey, notAfter, challenge));
    return t.verifyAttestation(t.parseAttestation(JSON.stringify(json)), challenge, { now: AT });
  };
  const failsWith = (pattern) => (e) => e.code === 'attestation_failed' && pattern.test(e.message);
  await assert.rejects(verify(doc(measurement)), failsWith(/^sev-snp evidence: report_data: /));
  await assert.rejects(verify(doc(measurement, { 'vcek.der': files['vcek.der'] })), failsWith(/^sev-snp evidence: malformed: collateral ask_ark.pem .*is missing/));
  await assert.rejects(verify(doc(measurement, {})), failsWith(/malformed: collateral vcek.der is missing/));
  const big = { 'vcek.der': files['vcek.der'], 'ask_ark.pem': new Uint8Array(300 * 1024) };
  assert.throws(() => t.parseAttestation(JSON.stringify({ ...doc(measurement, big), reportData: '00'.repeat(64) })), failsWith(/collateral/));
});
