// The Intel TDX verifier of the TypeScript SDK (src/tdx.ts) on the C++ verifier's fixtures
// (shared/attestation/tdx/, see its README) with the outcomes tests/attestation/tdx_test.cpp
// expects, one tampered byte (or policy value) per named check, the pinned Intel root compared with
// the C++ one, and the checks real fixtures cannot reach (they fail at tcb_status, expired or
// qe_identity first) on quotes of the test signer (test/tdx-signer.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HardwareFailure, parseHardwarePolicy, verifyEvidence } from '../dist/hardware.js';
import { PINNED_AMD_ARKS, PINNED_INTEL_ROOT } from '../dist/hardware_roots.js';
import { checkTdxQuote, parseQuote, parseTcbInfo, HEADER_BYTES, TD_REPORT10_BYTES, QE_REPORT_BYTES, BODY_MRTD_OFFSET } from '../dist/tdx.js';
import { createTdxSigner } from './tdx-signer.mjs';
import * as t from '../dist/internal.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const fixtures = [process.env.RVENC_VECTORS_DIR && join(process.env.RVENC_VECTORS_DIR, '..', 'attestation', 'tdx'),
  join(repo, '..', 'shared', 'attestation', 'tdx')].filter(Boolean).find((dir) => existsSync(dir));
const skip = !fixtures;
const SPR_TIME = 1688169600;  // 2023-07-01
const V5_TIME = 1771200000;   // 2026-02-16
const QVL_TIME = 1700000000;  // 2023-11-14
const SIG_DATA = HEADER_BYTES + TD_REPORT10_BYTES + 4;

const sets = new Map();
function load(set) {
  if (!sets.has(set)) {
    sets.set(set, Object.fromEntries(readdirSync(join(fixtures, set)).map((name) => [name, new Uint8Array(readFileSync(join(fixtures, set, name)))])));
  }
  return { ...sets.get(set) };  // the tests replace files, never change their bytes in place
}

const run = (set, { policy = {}, at = SPR_TIME, change, trustAnchorsPem, quote = 'quote.dat', expectedReportData } = {}) => {
  const collateral = load(set);
  change?.(collateral);
  return verifyEvidence({ provider: 'tdx', evidence: collateral[quote], collateral, policy: parseHardwarePolicy(policy), at, trustAnchorsPem, expectedReportData });
};
const failsAt = (check, pattern = /./) => (e) => e instanceof HardwareFailure && e.check === check && pattern.test(e.message);
const flip = (file, offset, mask = 1) => (c) => {
  c[file] = c[file].slice();
  c[file][offset < 0 ? c[file].length + offset : offset] ^= mask;
};
const editText = (file, needle, offset, char) => (c) => {
  const text = new TextDecoder().decode(c[file]);
  const at = text.indexOf(needle);
  assert.ok(at >= 0, needle);
  c[file] = new TextEncoder().encode(text.slice(0, at + offset) + char + text.slice(at + offset + 1));
};
const text = (set, file) => readFileSync(join(fixtures, set, file), 'utf8');

test('tdx spr-e4-v4: every signature, chain and CRL verifies, then no TCB level matches (tcb_status)', { skip }, async () => {
  await assert.rejects(run('spr-e4-v4'), failsAt('tcb_status', /no TCB level.*03000400000000000000000000000000/));
});

test('tdx spr-e4-v4 outside its window: expired', { skip }, async () => {
  for (const at of [1689000000, 1687000000, 1900000000]) await assert.rejects(run('spr-e4-v4', { at }), failsAt('expired'), String(at));
});

test('tdx v5-sample: the quote verifies (FMSPC 90c06f000000), its collateral is expired', { skip }, async () => {
  const { quote, pck } = await checkTdxQuote(load('v5-sample')['quote.dat'], V5_TIME);
  assert.equal(quote.version, 5);
  assert.equal(quote.bodyType, 3);
  assert.equal(t.toHex(pck.fmspc), '90c06f000000');
  await assert.rejects(run('v5-sample', { at: V5_TIME }), failsAt('expired'));
});

test('tdx qvl-synthetic: up to qe_identity under its own root, cert_chain under Intel\'s', { skip }, async () => {
  const trustAnchorsPem = text('qvl-synthetic', 'trust_root.pem');
  await checkTdxQuote(load('qvl-synthetic')['quote.dat'], QVL_TIME, trustAnchorsPem);
  await assert.rejects(run('qvl-synthetic', { at: QVL_TIME, trustAnchorsPem }), failsAt('qe_identity', /MRSIGNER/));
  await assert.rejects(run('qvl-synthetic', { at: QVL_TIME }), failsAt('cert_chain'));
  await assert.rejects(run('qvl-synthetic', { at: QVL_TIME, trustAnchorsPem: text('spr-e4-v4', 'trust_root.pem') }), failsAt('cert_chain'));
});

test('tdx pcci-quotes: verify without collateral (their FMSPCs), refused clearly without it', { skip }, async () => {
  const dir = load('pcci-quotes');
  const fmspcs = { 'quote.dat': '00806f050000', 'quote_b0c06f.dat': 'b0c06f000000', 'quote_zero_reportdata.dat': null };
  for (const [name, fmspc] of Object.entries(fmspcs)) {
    const { quote, pck } = await checkTdxQuote(dir[name], V5_TIME);
    if (fmspc) assert.equal(t.toHex(pck.fmspc), fmspc);
    else assert.ok(quote.body.reportData.every((b) => b === 0));
    await assert.rejects(run('pcci-quotes', { at: V5_TIME, quote: name }), failsAt('malformed', /pckcrl.der is missing/));
  }
});

test('tdx: one tampered byte per check fails at that check (spr-e4-v4)', { skip }, async () => {
  const pckEnd = new TextDecoder().decode(load('spr-e4-v4')['quote.dat']).indexOf('-----END CERTIFICATE-----');
  const cases = [
    ['signature', flip('quote.dat', SIG_DATA + 5), /quote \(by the attestation key\)/],               // the quote's signature
    ['signature', flip('quote.dat', HEADER_BYTES + BODY_MRTD_OFFSET, 0x80), /quote/],                // MRTD
    ['signature', flip('quote.dat', SIG_DATA + 128 + 6 + 130), /QE report \(by the PCK\)/],            // the QE report
    ['signature', flip('quote.dat', SIG_DATA + 128 + 6 + QE_REPORT_BYTES + 64 + 2), /QE report data/], // QE auth data
    ['signature', flip('quote.dat', SIG_DATA + 64 + 3), /QE report data/],                           // the attestation key
    ['signature', editText('tcbinfo.json', '"tcbEvaluationDataNumber":15', 26, '6'), /tcbinfo.json/],
    ['signature', editText('qeidentity.json', '"isvprodid":2', 12, '3'), /qeidentity.json/],
    ['cert_chain', flip('quote.dat', pckEnd - 40, 'A'.charCodeAt(0) ^ 'B'.charCodeAt(0)), /PCK chain/],  // the PCK's signature
    ['crl', flip('pckcrl.der', -3), /CRL signature failure/],                                      // the PCK CA's CRL signature
    ['crl', flip('rootcrl.der', -3), /CRL signature failure/],
    ['malformed', (c) => { c['quote.dat'] = c['quote.dat'].slice(0, 1000); }, /TDX quote/],
    ['malformed', (c) => { c['pckcrl.der'] = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]); }, /pckcrl.der/],
    ['malformed', (c) => { c['tcbinfo.json'] = c['qeidentity.json']; }, /tcbinfo.json/],
  ];
  for (const [check, change, pattern] of cases) {
    await assert.rejects(run('spr-e4-v4', { change }), failsAt(check, pattern), `expected ${check} (${pattern})`);
  }
  await assert.rejects(run('spr-e4-v4', { trustAnchorsPem: PINNED_AMD_ARKS.join('') }), failsAt('cert_chain'));
  await assert.rejects(run('spr-e4-v4', { at: 1900000000 }), failsAt('expired'));
  await assert.rejects(run('spr-e4-v4', { policy: { providers: ['sev-snp'] } }), failsAt('measurement', /not listed/));
});

test('tdx: TCB Info and QE Identity are checked on their raw bytes', { skip }, async () => {
  const original = load('spr-e4-v4')['tcbinfo.json'];
  const body = new TextDecoder().decode(original);
  const withFile = (s) => ({ change: (c) => { c['tcbinfo.json'] = new TextEncoder().encode(s); } });
  await assert.rejects(run('spr-e4-v4', withFile(`{ "tcbInfo" :\n ${body.slice(11)}`)), failsAt('tcb_status'));  // around: nothing changes
  const at = body.indexOf('"version"');
  await assert.rejects(run('spr-e4-v4', withFile(`${body.slice(0, at)} ${body.slice(at)}`)), failsAt('signature'));  // inside: another document
  const end = body.indexOf(',"signature"');
  await assert.rejects(run('spr-e4-v4', withFile(`${body.slice(0, end)},${body.slice(1, end)}${body.slice(end)}`)), failsAt('malformed', /raw bytes/));
  const info = parseTcbInfo(load('v5-sample')['tcbinfo.json']);
  assert.equal(info.levels.length, 3);
  assert.deepEqual(info.moduleIdentities.map((m) => m.id), ['TDX_03', 'TDX_01']);
});

test('tdx: every truncation and every named header field is malformed, never a crash', { skip }, async () => {
  const full = load('spr-e4-v4')['quote.dat'];
  for (let n = 0; n < 4935; n += n < 700 ? 1 : 37) {
    await assert.rejects(run('spr-e4-v4', { change: (c) => { c['quote.dat'] = full.slice(0, n); } }), failsAt('malformed'), String(n));
  }
  const v5 = load('v5-sample')['quote.dat'];
  const certType = SIG_DATA + 128;
  const innerType = certType + 6 + QE_REPORT_BYTES + 64 + 2 + 32;
  for (const [quote, offset, value, words] of [[full, 0, 3, 'version 3'], [full, 2, 3, 'attestation key type 3'], [full, 4, 0, 'TEE type 0'],
    [v5, 48, 4, 'v5 body type 4'], [v5, 50, 0x49, 'v5 body size'], [full, certType, 5, 'certification data type 5'],
    [full, innerType, 4, 'QE certification data type 4']]) {
    const q = quote.slice();
    q[offset] = value;
    assert.throws(() => parseQuote(q), failsAt('malformed', new RegExp(words)), words);
  }
  for (let n = 0; n < v5.length; n += 7) assert.throws(() => parseQuote(v5.slice(0, n)), failsAt('malformed'));
});

test('tdx: a missing collateral file is named', { skip }, async () => {
  for (const name of ['pckcrl.der', 'rootcrl.der', 'tcbinfo.json', 'tcbinfo_issuer_chain.pem', 'qeidentity.json', 'qeidentity_issuer_chain.pem']) {
    await assert.rejects(run('spr-e4-v4', { change: (c) => { delete c[name]; } }), failsAt('malformed', new RegExp(`${name} is missing`)), name);
  }
});

test('tdx: the pinned Intel root is the C++ verifier\'s and the fixtures\' (byte for byte)', { skip }, () => {
  const der = (pem) => Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
  const roots = readFileSync(join(repo, 'src', 'attestation', 'roots.cpp'), 'utf8');
  const cpp = /kIntelSgxRootCa = R"\(\s*(-----BEGIN CERTIFICATE-----[^)]*-----END CERTIFICATE-----)\)"/.exec(roots)[1];
  assert.ok(der(PINNED_INTEL_ROOT).equals(der(cpp)), 'not the DER of roots.cpp\'s kIntelSgxRootCa');
  assert.ok(der(PINNED_INTEL_ROOT).equals(der(text('spr-e4-v4', 'trust_root.pem'))));
  assert.ok(der(PINNED_INTEL_ROOT).equals(readFileSync(join(fixtures, 'pcci-quotes', 'intel_root_ca.der'))));
  const fingerprint = createHash('sha256').update(der(PINNED_INTEL_ROOT)).digest('hex');
  assert.equal(fingerprint, '44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3');
  assert.ok(roots.includes(fingerprint));
});

// ---- the test signer: a quote that passes every check, and each later check failing alone ----

const BINDING = new Uint8Array(64).fill(0xb1);
// A new signer's verify(options); verify.signer is that signer (its validity starts at its own
// creation time: compare against it, never against another signer made a second earlier).
const signed = async (signerOptions = {}) => {
  const signer = await createTdxSigner(signerOptions);
  const collateral = await signer.collateral();
  const verify = async ({ policy = {}, quote = {}, expectedReportData = BINDING, at = signer.validAt, change } = {}) => {
    const files = { ...collateral };
    change?.(files);
    return verifyEvidence({ provider: 'tdx', evidence: await signer.quote(BINDING, quote), collateral: files, policy: parseHardwarePolicy(policy),
      at, trustAnchorsPem: signer.anchorsPem, expectedReportData });
  };
  return Object.assign(verify, { signer });
};

test('tdx signer: a signed quote passes every check; policy, debug and report_data each fail alone', async () => {
  // One signer: its chain's notAfter bounds validUntil. (A second signer made for the check held
  // notBefore = its creation time - 1 day, one second later than the first's when a second boundary
  // passed between the two: validUntil > notAfter, seen once on a loaded machine.)
  const verify = await signed();
  const { signer } = verify;
  const rtmr2 = new Uint8Array(48).fill(0x22);
  const verified = await verify({ quote: { rtmr: [new Uint8Array(48), new Uint8Array(48), rtmr2] } });
  assert.equal(verified.tcbStatus, 'UpToDate');
  assert.equal(verified.fields.rtmr2, t.toHex(rtmr2));
  assert.equal(verified.fields.fmspc, '90c06f000000');
  assert.equal(t.toHex(verified.measurement).slice(0, 4), '7d7d');
  assert.ok(verified.validUntil <= signer.notAfter);
  const mrtd = t.toHex(verified.measurement);
  await verify({ policy: { tdx: { mrtd: ['00'.repeat(48), mrtd], xfam: ['e702060000000000'] } } });
  const cases = [
    ['debug', { quote: { tdAttributes: [1] } }, /TUD.DEBUG/],
    ['measurement', { policy: { tdx: { mrtd: ['00'.repeat(48)] } } }, /^measurement: mrtd/],
    ['measurement', { policy: { tdx: { rtmr2: ['11'.repeat(48)] } } }, /rtmr2/],
    ['measurement', { policy: { tdx: { xfam: ['0000000000000000'] } } }, /xfam/],
    ['report_data', { expectedReportData: new Uint8Array(64) }, /REPORTDATA/],
    ['tcb_status', { quote: { teeTcbSvn: [4, 0, 3] } }, /no TCB level/],
    ['expired', { at: signer.notAfter + 2 * 86400 }, /not valid at|expired/],
  ];
  for (const [check, options, pattern] of cases) await assert.rejects(verify(options), failsAt(check, pattern), `expected ${check} (${pattern})`);
  await verify({ quote: { tdAttributes: [1] }, policy: { allowDebug: true } });
});

test('tdx signer: TCB and QE statuses against the policy\'s minimum, a revoked PCK, another platform\'s TCB Info', async () => {
  const outOfDate = await signed({ tcbStatus: 'OutOfDate' });
  await assert.rejects(outOfDate(), failsAt('tcb_status', /OutOfDate, the policy asks at least UpToDate/));
  assert.equal((await outOfDate({ policy: { tdx: { minTcbStatus: 'OutOfDate' } } })).tcbStatus, 'OutOfDate');
  await assert.rejects((await signed({ tcbStatus: 'Revoked' }))({ policy: { tdx: { minTcbStatus: 'OutOfDateConfigurationNeeded' } } }), failsAt('tcb_status', /Revoked/));
  await assert.rejects((await signed({ qeStatus: 'OutOfDate' }))(), failsAt('qe_identity', /ISVSVN 8 is OutOfDate/));
  const signer = await createTdxSigner();
  const revoked = await signer.pckCrl(true);
  const verify = await signed();
  await assert.rejects(verify({ change: (c) => { c['pckcrl.der'] = revoked; } }), failsAt('crl', /CRL signature failure/));  // another signer's CRL
  const own = await signed();
  await assert.rejects(own({ change: (c) => { c['tcbinfo.json'] = c['qeidentity.json']; } }), failsAt('malformed'));
  await assert.rejects((await signed({ tcbInfoFmspc: [0x00, 0x80, 0x6f, 0x05, 0, 0] }))(), failsAt('tcb_status', /FMSPC 00806f050000/));
  await assert.rejects(verify({ policy: { tdx: { minTcbStatus: 'Revoked' } } }), failsAt('malformed', /tdx.minTcbStatus/));
});

// asn1js throws (a plain Error) on a GeneralizedTime that is not a time: such a value in a PCK's
// SGX extension escaped as that Error instead of HardwareFailure(malformed).
test('tdx signer: a PCK whose SGX extension asn1js cannot read is malformed, not an exception', async () => {
  const badTime = new Uint8Array([0x30, 0x04, 0x18, 0x02, 0x7a, 0x7a]).buffer;
  await assert.rejects((await signed({ sgxExtensionDer: badTime }))(), failsAt('malformed', /SGX extensions: not a DER sequence/));
  const truncated = new Uint8Array([0x30, 0x05, 0x06, 0x03, 0x2a]).buffer;
  await assert.rejects((await signed({ sgxExtensionDer: truncated }))(), failsAt('malformed', /SGX extensions/));
});

test('tdx signer: the signer\'s own CRL revoking its PCK fails at crl', async () => {
  const signer = await createTdxSigner();
  const collateral = { ...(await signer.collateral()), 'pckcrl.der': await signer.pckCrl(true) };
  await assert.rejects(verifyEvidence({ provider: 'tdx', evidence: await signer.quote(BINDING), collateral, policy: parseHardwarePolicy({}),
    at: signer.validAt, trustAnchorsPem: signer.anchorsPem }), failsAt('crl', /revoked/));
});

// The evidence inside a document, through the client's verifyAttestation (pinned Intel root, the
// document's reportData as the expected binding): the real quote at its time reaches tcb_status.
test('attestation document with tdx evidence: verified through the hardware checks', { skip }, async () => {
  await t.ready();
  const challenge = new Uint8Array(32).fill(3);
  const { publicKey } = t.xwingSeedKeypair(new Uint8Array(32).fill(1));
  const notAfter = SPR_TIME + 365 * 86400;
  const files = load('spr-e4-v4');
  const collateral = Object.fromEntries(Object.entries(files).filter(([k]) => k !== 'quote.dat').map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  const json = {
    keyId: t.toHex(await t.keyIdOf(publicKey)), kem: 'X-Wing', publicKey: t.toHex(publicKey), notAfter, provider: 'tdx', binding: 2,
    evidence: Buffer.from(files['quote.dat']).toString('base64'), measurement: t.toHex(files['quote.dat'].slice(HEADER_BYTES + BODY_MRTD_OFFSET, HEADER_BYTES + BODY_MRTD_OFFSET + 48)),
    reportData: t.toHex(await t.reportDataV2For(publicKey, notAfter, challenge)), collateral,
  };
  const verify = (doc, now = SPR_TIME) => t.verifyAttestation(t.parseAttestation(JSON.stringify(doc)), challenge, { now });
  const failsWith = (pattern) => (e) => e.code === 'attestation_failed' && pattern.test(e.message);
  await assert.rejects(verify(json), failsWith(/^tdx evidence: tcb_status: no TCB level/));
  await assert.rejects(verify({ ...json, collateral: {} }), failsWith(/^tdx evidence: malformed: TDX collateral file pckcrl.der is missing/));
  await assert.rejects(verify(json, SPR_TIME + 30 * 86400), failsWith(/^tdx evidence: expired: /));
});

// Random changes (seeded, so a failure replays) to every file of spr-e4-v4: each is a named
// HardwareFailure, never another exception.
test('tdx: 400 seeded random changes to the quote and its collateral fail at a named check, never crash', { skip }, async () => {
  const base = load('spr-e4-v4');
  const names = Object.keys(base);
  let seed = 22;
  const rnd = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let i = 0; i < 400; i += 1) {
    const name = names[rnd(names.length)];
    const bytes = base[name].slice();
    const kind = rnd(3);
    if (kind === 0) bytes[rnd(bytes.length)] = rnd(256);
    else if (kind === 1) bytes[rnd(bytes.length)] = [0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x30, 0x0a][rnd(9)];
    const change = (c) => { c[name] = kind === 2 ? bytes.subarray(0, rnd(bytes.length)) : bytes; };
    await assert.rejects(run('spr-e4-v4', { change }), (e) => e instanceof HardwareFailure, `${name}, change ${i}`);
  }
});
